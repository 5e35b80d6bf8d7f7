"""ONNX suspects: a datamark model exported with torch.onnx answers as the torch model does, under a declared
preprocessing that is checked against the file; the loader dispatches on what a path holds."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from datamark import Verifier
from datamark.exceptions import DataFormatError, ParameterError, SuspectError
from datamark.models import save_checkpoint
from datamark.suspects import LocalSuspect, ONNXSuspect, Preprocessing, Suspect, load_suspect, suspect_kind

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")

LOGITS_NCHW = Preprocessing(layout="NCHW", datatype="FP32", scale=1, model_outputs="logits")


def export(module: nn.Module, example: torch.Tensor, path, *, dynamic: bool = True) -> str:
    """``module`` as an ONNX file with input 'pixels' and output 'scores' (the TorchScript exporter: the
    dynamo one needs onnxscript, and both give the same graph for these models)."""
    axes = {"pixels": {0: "n"}, "scores": {0: "n"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 names the TorchScript exporter legacy
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, input_names=["pixels"],
                          output_names=["scores"], dynamic_axes=axes)
    return str(path)


class NHWC255(nn.Module):
    """The tiny model without its own normalisation, taking NHWC floats that were normalised outside it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.body, self.head = nn.Sequential(*list(model.features)[1:]), model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.permute(0, 3, 1, 2)))


class FromUint8(nn.Module):
    """A graph that takes raw uint8 NHWC pixels and ends with a softmax or an argmax."""

    def __init__(self, model: nn.Module, end: str) -> None:
        super().__init__()
        self.model, self.end = model, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x.permute(0, 3, 1, 2).float() / 255.0)
        return logits.softmax(1) if self.end == "probs" else logits.argmax(1)


@pytest.fixture(scope="module")
def stolen_onnx(tiny_pair, tmp_path_factory):
    key, stolen, clean, test = tiny_pair
    folder = tmp_path_factory.mktemp("onnx")
    example = torch.rand(2, 1, 8, 8)
    paths = {"stolen": export(stolen.model, example, folder / "stolen.onnx"),
             "clean": export(clean.model, example, folder / "clean.onnx")}
    return paths, test.inputs()[:40]


def test_answers_equal_the_torch_model(tiny_pair, stolen_onnx):
    _, stolen, _, _ = tiny_pair
    paths, images = stolen_onnx
    suspect = ONNXSuspect(paths["stolen"], preprocessing=LOGITS_NCHW, batch_size=16)
    assert isinstance(suspect, Suspect) and suspect.num_classes == 10 and suspect.queries == 0
    probs = suspect.query(images)
    assert np.allclose(probs, stolen.query(images), atol=1e-5) and suspect.queries == 40
    labels = suspect.with_outputs("labels")
    assert np.array_equal(labels.query(images), probs.argmax(1)) and labels.queries == 40
    record = json.loads(json.dumps(suspect.describe()))
    assert record["model_sha256"] == labels.describe()["model_sha256"] and len(record["model_sha256"]) == 64
    assert record["preprocessing"] == {"layout": "NCHW", "datatype": "FP32", "model_outputs": "logits",
                                       "scale": 1.0, "mean": None, "std": None}
    assert suspect.budget_left is None and suspect.query(images[:0]).shape == (0, 10)


def test_declared_normalisation_layout_and_scale_matter(tiny_pair, tmp_path):
    _, stolen, _, _ = tiny_pair
    images = tiny_pair[3].inputs()[:60]
    path = export(NHWC255(stolen.model), torch.rand(2, 8, 8, 1), tmp_path / "nhwc.onnx")
    norm = stolen.model.features[0]
    mean, std = tuple(255 * norm.mean.flatten().numpy()), tuple(255 * norm.std.flatten().numpy())
    right = Preprocessing(layout="NHWC", datatype="FP32", scale=255, mean=mean, std=std, model_outputs="logits")
    expected = stolen.query(images)
    assert np.allclose(ONNXSuspect(path, preprocessing=right).query(images), expected, atol=1e-4)
    # a white pixel declared as 1 with the statistics left on the 255 scale: answers change visibly
    wrong = Preprocessing(layout="NHWC", datatype="FP32", scale=1, mean=mean, std=std, model_outputs="logits")
    answers = ONNXSuspect(path, preprocessing=wrong).query(images)
    assert np.abs(answers - expected).max() > 0.3 and (answers.argmax(1) == expected.argmax(1)).mean() < 0.5
    # the wrong layout is caught from the file's shape before anything is counted
    with pytest.raises(SuspectError, match=r"input 'pixels' .* has 8 at axis 1.* declare layout='NHWC'"):
        ONNXSuspect(path, preprocessing=LOGITS_NCHW)
    with pytest.raises(SuspectError, match="1 channels but 3 mean/std values"):
        ONNXSuspect(path, preprocessing=Preprocessing(layout="NHWC", datatype="FP32", scale=1, mean=(0.5,) * 3,
                                                      std=(0.2,) * 3, model_outputs="logits"))


def test_declaration_is_checked_against_the_file(stolen_onnx):
    path = stolen_onnx[0]["stolen"]
    with pytest.raises(SuspectError, match=r"takes FP32, not the declared datatype UINT8; declare datatype='FP32'"):
        ONNXSuspect(path, preprocessing=Preprocessing(layout="NCHW", datatype="UINT8", model_outputs="logits"))
    with pytest.raises(SuspectError, match="no input named 'image'.*'pixels'"):
        ONNXSuspect(path, preprocessing=LOGITS_NCHW, input_name="image")
    with pytest.raises(SuspectError, match="has 10 classes, not num_classes=3"):
        ONNXSuspect(path, preprocessing=LOGITS_NCHW, num_classes=3)
    with pytest.raises(SuspectError, match="does not hold labels"):
        ONNXSuspect(path, preprocessing=Preprocessing(layout="NCHW", datatype="FP32", scale=1,
                                                      model_outputs="labels"), outputs="labels", num_classes=10)
    logits_as_probs = ONNXSuspect(path, preprocessing=Preprocessing(layout="NCHW", datatype="FP32", scale=1,
                                                                    model_outputs="probs"))
    with pytest.raises(SuspectError, match=r"declare model_outputs='logits'"):
        logits_as_probs.query(stolen_onnx[1])
    assert logits_as_probs.queries == 0
    suspect = ONNXSuspect(path, preprocessing=LOGITS_NCHW)
    with pytest.raises(SuspectError, match=r"takes examples of shape 8 x 8 x 1.*\(2, 9, 9, 1\)"):
        suspect.query(np.zeros((2, 9, 9, 1), dtype=np.uint8))
    with pytest.raises(SuspectError, match="uint8"):
        suspect.query(np.zeros((2, 8, 8, 1), dtype=np.float32))
    assert suspect.queries == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"layout": "NCHW", "datatype": "FP32", "model_outputs": "logits"}, "needs its 'scale' declared"),
    ({"layout": "NCHW", "datatype": "FP32", "scale": 1, "mean": (0.5,), "model_outputs": "logits"}, "together"),
    ({"layout": "NHWC", "datatype": "UINT8", "mean": (0.5,), "std": (0.2,), "model_outputs": "logits"}, "FP32 images"),
    ({"layout": "NCHW", "datatype": "FP32", "scale": 1, "mean": (0.5,), "std": (0,), "model_outputs": "logits"},
     "std > 0"),
    ({"layout": "NCHW", "datatype": "FP32", "scale": 2, "model_outputs": "logits"}, "255 or 1"),
    ({"layout": "NCWH", "datatype": "FP32", "scale": 1, "model_outputs": "logits"}, "'layout'"),
    ({"layout": "NCHW", "datatype": "FP32", "scale": 1, "model_outputs": "softmax"}, "'model_outputs'"),
    ({"layout": "NL", "datatype": "FP32", "scale": 255, "model_outputs": "logits"}, "does not apply"),
])
def test_preprocessing_refuses_incomplete_or_inconsistent_declarations(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Preprocessing(**kwargs)


def test_encoding_follows_the_declaration():
    images = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3) * 7
    declared = Preprocessing(layout="NCHW", datatype="FP32", scale=1, mean=[0.5, 0.4, 0.3], std=0.2,
                             model_outputs="logits")
    expected = (images.transpose(0, 3, 1, 2) / 255.0 - np.array([0.5, 0.4, 0.3])[:, None, None]) / 0.2
    encoded = declared.encode(images)
    assert encoded.dtype == np.float32 and np.allclose(encoded, expected, atol=1e-5)
    assert declared.to_dict()["std"] == [0.2] and declared.modality == "image"
    raw = Preprocessing(layout="NHWC", datatype="UINT8", model_outputs="probs")
    assert raw.scale == 255.0 and np.array_equal(raw.encode(images), images)


def test_uint8_graphs_with_fixed_batch_probabilities_and_labels(tiny_pair, tmp_path):
    _, stolen, _, test = tiny_pair
    images = test.inputs()[:10]
    expected = stolen.query(images)
    example = torch.zeros(4, 8, 8, 1, dtype=torch.uint8)
    probs_path = export(FromUint8(stolen.model, "probs"), example, tmp_path / "p.onnx", dynamic=False)
    declared = Preprocessing(layout="NHWC", datatype="UINT8", model_outputs="probs")
    fixed = ONNXSuspect(probs_path, preprocessing=declared)  # batch of 4 in the file: 4 + 4 + 2 padded
    assert np.allclose(fixed.query(images), expected, atol=1e-5) and fixed.queries == 10
    labels_path = export(FromUint8(stolen.model, "labels"), example, tmp_path / "l.onnx")
    declared = Preprocessing(layout="NHWC", datatype="UINT8", model_outputs="labels")
    with pytest.raises(SuspectError, match="cannot answer probabilities"):
        ONNXSuspect(labels_path, preprocessing=declared)
    with pytest.raises(SuspectError, match="pass num_classes"):
        ONNXSuspect(labels_path, preprocessing=declared, outputs="labels")
    labels = ONNXSuspect(labels_path, preprocessing=declared, outputs="labels", num_classes=10)
    assert np.array_equal(labels.query(images), expected.argmax(1)) and labels.queries == 10


def test_audio_waveforms_in_layout_nl(tmp_path):
    model = nn.Sequential(nn.Linear(32, 3)).eval()
    waves = np.random.default_rng(0).uniform(-1, 1, (5, 32)).astype(np.float32)
    path = export(model, torch.zeros(2, 32), tmp_path / "audio.onnx")
    declared = Preprocessing(layout="NL", datatype="FP32", model_outputs="logits")
    with pytest.raises(ParameterError, match="sample_rate"):
        ONNXSuspect(path, preprocessing=declared)
    suspect = ONNXSuspect(path, preprocessing=declared, sample_rate=8000)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(waves)), 1).numpy()
    assert np.allclose(suspect.query(waves), expected, atol=1e-5)
    assert suspect.describe()["sample_rate"] == 8000 and suspect.describe()["modality"] == "audio"
    with pytest.raises(SuspectError, match="takes examples of shape 32"):
        suspect.query(waves[:, :16])


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_verifier_gives_the_torch_model_verdict(tiny_pair, stolen_onnx, mode):
    key, stolen, clean, test = tiny_pair
    paths = stolen_onnx[0]
    for name, torch_model in (("stolen", stolen), ("clean", clean)):
        onnx_model = load_suspect(paths[name], outputs=mode, layout="NCHW", datatype="FP32", scale=1,
                                  model_outputs="logits", mean=None, std=None)
        expected = Verifier(mode=mode).verify(torch_model.with_outputs(mode), key, test)
        got = Verifier(mode=mode).verify(onnx_model, key, test)
        assert got.accused == expected.accused, name
        if mode == "probs":  # on 8x8 digits the label-only test of this single-mark key is not significant
            assert got.accused == (name == "stolen"), name
        assert got.outcome.p_value == pytest.approx(expected.outcome.p_value, rel=1e-3, abs=1e-12)
        assert got.queries == expected.queries == onnx_model.queries


def test_loader_dispatches_on_what_the_path_holds(tiny_pair, stolen_onnx, tmp_path):
    _, stolen, _, test = tiny_pair
    from datamark.models.checkpoint import ModelSpec

    spec = ModelSpec("tiny", 10, (8, 8, 1), (0.5,), (0.25,))
    save_checkpoint(stolen.model, spec, tmp_path / "model.pt")
    assert suspect_kind(tmp_path / "model.pt") == "checkpoint"
    local = load_suspect(tmp_path / "model.pt", outputs="labels", batch_size=7, layout=None)
    assert isinstance(local, LocalSuspect) and local.outputs == "labels" and local.batch_size == 7
    with pytest.raises(ParameterError, match="layout do not apply to the checkpoint .* own preprocessing"):
        load_suspect(tmp_path / "model.pt", layout="NCHW")
    with pytest.raises(ParameterError, match="missing datatype, model_outputs"):
        load_suspect(stolen_onnx[0]["stolen"], layout="NCHW")
    (tmp_path / "notes.txt").write_text("not a model")
    for path in (tmp_path / "notes.txt", tmp_path):
        with pytest.raises(DataFormatError, match=r"an ONNX file \(\*\.onnx\)"):
            load_suspect(path)
    with pytest.raises(FileNotFoundError, match="No model at"):
        load_suspect(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(SuspectError, match="Cannot load the ONNX model"):
        load_suspect(bad, layout="NCHW", datatype="FP32", scale=1, model_outputs="logits")
