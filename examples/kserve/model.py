"""A stock KServe model server (``kserve.Model`` + ``kserve.ModelServer``) serving a datamark checkpoint.

It shows that :class:`datamark.suspects.HTTPSuspect` verifies a model behind KServe's own Python model server,
as a model author writes it: the model leaves ``get_input_types`` / ``get_output_types`` alone, so its V2
metadata (``GET /v2/models/NAME``) declares empty ``inputs`` and ``outputs``. The client then takes the input
from its options and learns the output from the first answer (see HTTPSuspect's docstring)::

    python examples/kserve/model.py --checkpoint suspect.pt --model_name suspect --http_port 8080
    datamark verify --endpoint http://127.0.0.1:8080 --model-name suspect --input-name input \\
        --datatype UINT8 --num-classes 10 --key owner.key.json --data cifar10:test

The checkpoint is read with datamark's loader (``torch.load(weights_only=True)``: a file cannot run code).
KServe is not a datamark dependency: ``pip install kserve`` (it pulls in gRPC, Kubernetes and pandas; a separate
venv that can see datamark works, see tests/test_kserve_interop.py). Every option of ``kserve.ModelServer``
(``--grpc_port``, ``--enable_grpc``, ``--ssl_certfile``, ...) is accepted too.
"""

from __future__ import annotations

import argparse
import uuid

import kserve
import numpy as np
from kserve.errors import InvalidInput

from datamark.suspects import LocalSuspect


class DatamarkModel(kserve.Model):
    """Answers class probabilities (FP32, N x K, output ``probs``) for one UINT8 N x H x W x C input tensor."""

    def __init__(self, name: str, checkpoint: str) -> None:
        super().__init__(name)
        self.checkpoint = checkpoint
        self.ready = False

    def load(self) -> bool:
        self._suspect = LocalSuspect.from_checkpoint(self.checkpoint)
        self.ready = True
        return self.ready

    def predict(self, payload: kserve.InferRequest, headers: dict | None = None,
                response_headers: dict | None = None) -> kserve.InferResponse:
        if len(payload.inputs) != 1:
            raise InvalidInput(f"expected one input tensor of images; got {len(payload.inputs)}")
        tensor = payload.inputs[0]
        if tensor.datatype != "UINT8":
            raise InvalidInput(f"input '{tensor.name}' must be UINT8 N x H x W x C images; got {tensor.datatype}")
        images = tensor.as_numpy()
        expected = tuple(self._suspect.input_shape or ())
        if images.ndim != 4 or (expected and images.shape[1:] != expected):
            raise InvalidInput(f"input '{tensor.name}' must have shape [N, {', '.join(map(str, expected))}]; got "
                               f"{list(images.shape)}")
        probs = self._suspect.query(images.astype(np.uint8)).astype(np.float32)
        output = kserve.InferOutput(name="probs", shape=list(probs.shape), datatype="FP32")
        output.set_data_from_numpy(probs, binary_data=False)
        # V2 makes a request's id optional (datamark sends none); KServe's response needs one.
        return kserve.InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
                                    infer_outputs=[output])


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--checkpoint", required=True, help="A datamark checkpoint (datamark train --out).")
    args, _ = parser.parse_known_args()
    model = DatamarkModel(args.model_name, args.checkpoint)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
