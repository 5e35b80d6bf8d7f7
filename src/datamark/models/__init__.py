"""Reference architectures, their checkpoints and a trainer that learns the way a thief would."""

from ..registry import MODELS
from .fastnet import FastNet
from .resnet import ResNet18, ResNet20
from .tiny import TinyCNN
from .vgg import VGG11

MODELS.update({"tiny": TinyCNN, "fastnet": FastNet, "resnet18": ResNet18, "resnet20": ResNet20, "vgg11": VGG11})

from .audio import LogMelCNN, RawAudioCNN  # noqa: E402
from .audio_train import AudioTrainConfig, default_audio_config, fit_audio, train_audio_model  # noqa: E402
from .checkpoint import ModelSpec, build_model, load_checkpoint, save_checkpoint  # noqa: E402
from .features import embed, features_of  # noqa: E402
from .text import BagOfEmbeddings, MiniLMClassifier, TextCNN, TextTruncationWarning, WordVocab  # noqa: E402
from .text_train import TextTrainConfig, default_text_config, fit_text, train_text_model  # noqa: E402
from .train import TrainConfig, default_config, fit, train_model  # noqa: E402

__all__ = ["FastNet", "ModelSpec", "ResNet18", "ResNet20", "TinyCNN", "TrainConfig", "VGG11", "build_model",
           "default_config", "embed", "features_of", "fit", "load_checkpoint", "save_checkpoint", "train_model"]
__all__ += ["BagOfEmbeddings", "MiniLMClassifier", "TextCNN", "TextTrainConfig", "TextTruncationWarning", "WordVocab",
            "default_text_config", "fit_text", "train_text_model"]
__all__ += ["AudioTrainConfig", "LogMelCNN", "RawAudioCNN", "default_audio_config", "fit_audio", "train_audio_model"]

from .graph import GIN, GraphSAGE, graph_inputs  # noqa: E402 -- PyG is imported only when a model is built
from .graph_train import GraphTrainConfig, default_graph_config, fit_graph, train_graph_model  # noqa: E402

__all__ += ["GIN", "GraphSAGE", "GraphTrainConfig", "default_graph_config", "fit_graph", "graph_inputs",
            "train_graph_model"]
