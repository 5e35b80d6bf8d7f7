"""An MLServer runtime serving a datamark checkpoint over the Open Inference Protocol (KServe V2).

It shows that :class:`datamark.suspects.HTTPSuspect` verifies a model behind a third-party V2 server, not only
behind ``datamark serve``. Put this file beside ``model-settings.json`` (``parameters.uri`` = the checkpoint)
and run ``mlserver start .``; then ``datamark verify --endpoint http://127.0.0.1:8080 --model-name NAME ...``.
MLServer is not a datamark dependency: ``pip install mlserver`` (it pins its own FastAPI; use a separate venv).
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

from datamark.suspects import LocalSuspect


class DatamarkRuntime(MLModel):
    """Answers class probabilities (FP32, N x K) for a UINT8 N x H x W x C input tensor."""

    async def load(self) -> bool:
        self._suspect = LocalSuspect.from_checkpoint(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        images = NumpyCodec.decode_input(payload.inputs[0]).astype(np.uint8)
        probs = self._suspect.query(images).astype(np.float32)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("probs", probs)])
