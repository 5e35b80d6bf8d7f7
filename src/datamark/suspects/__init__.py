"""Suspects: the models a verifier queries, local or remote, behind one small protocol."""

from .base import Suspect, as_suspect, labels_of, require_probs, validate_output
from .http import HTTPSuspect
from .json_endpoint import JSONSuspect, JSONTemplate
from .loading import load_suspect, suspect_kind
from .local import LocalSuspect
from .onnx import ONNXSuspect
from .preprocessing import Preprocessing

# HTTP suspects import httpx/tenacity only when built, ONNX ones onnxruntime; the server (``.serve``) imports FastAPI
# only when used.
__all__ = ["HTTPSuspect", "JSONSuspect", "JSONTemplate", "LocalSuspect", "ONNXSuspect", "Preprocessing", "Suspect",
           "TransformersImageSuspect", "TransformersSuspect", "as_suspect", "labels_of", "load_suspect",
           "require_probs", "suspect_kind", "validate_output"]


def __getattr__(name: str):
    """The ``transformers`` suspects on first use (their modules are light, but belong with an optional extra)."""
    if name == "TransformersSuspect":
        from .transformers import TransformersSuspect

        return TransformersSuspect
    if name == "TransformersImageSuspect":
        from .transformers_image import TransformersImageSuspect

        return TransformersImageSuspect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
