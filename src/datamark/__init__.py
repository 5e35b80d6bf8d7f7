"""datamark: watermark a dataset before release, then prove from black-box queries whether a model used it.

The flow: ``load_data`` -> a method's ``apply`` (watermarked data + secret :class:`Key`) -> someone trains a
model -> :class:`Verifier` queries a :class:`Suspect` with the key's trigger and tests the answers.
"""

from ._version import __version__  # noqa: F401 -- the public version
from .data import from_numpy, from_pairs, load_data  # noqa: E402
from .data.card import dataset_card  # noqa: E402
from .key import Key  # noqa: E402
from .methods import UBWP, BadNets, Blended, CleanLabel, LabelConsistent, Watermarked, WatermarkMethod  # noqa: E402
from .registry import METHODS  # noqa: E402
from .suspects import LocalSuspect, Suspect, load_suspect  # noqa: E402
from .verify import VerificationResult, Verifier, verify  # noqa: E402

__all__ = ["UBWP", "BadNets", "Blended", "CleanLabel", "Key", "LabelConsistent", "LocalSuspect", "METHODS", "Suspect",
           "VerificationResult", "Verifier", "WatermarkMethod", "Watermarked", "dataset_card", "from_numpy",
           "from_pairs", "load_data", "load_suspect", "verify"]
