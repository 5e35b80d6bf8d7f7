"""Reference architectures, their checkpoints and a trainer that learns the way a thief would."""

from ..registry import MODELS
from .fastnet import FastNet
from .resnet import ResNet18
from .tiny import TinyCNN

MODELS.update({"tiny": TinyCNN, "fastnet": FastNet, "resnet18": ResNet18})

from .checkpoint import ModelSpec, build_model, load_checkpoint, save_checkpoint  # noqa: E402
from .train import TrainConfig, default_config, fit, train_model  # noqa: E402

__all__ = ["FastNet", "ModelSpec", "ResNet18", "TinyCNN", "TrainConfig", "build_model", "default_config", "fit",
           "load_checkpoint", "save_checkpoint", "train_model"]
