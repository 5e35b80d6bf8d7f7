"""transformers image classifiers as suspects: the model's own image processor does the preprocessing; a model
and its processor, a pipeline and a saved folder answer alike; the loader tells text from image folders."""

import json

import numpy as np
import pytest
import torch

from datamark._rng import isolated_torch_rng
from datamark.exceptions import DataFormatError, ParameterError, SuspectError
from datamark.suspects import Suspect, TransformersImageSuspect, TransformersSuspect, load_suspect, suspect_kind

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = {0: "cat", 1: "dog", 2: "owl"}


def tiny_vit(num_channels: int = 3) -> "transformers.ViTForImageClassification":
    """A randomly initialised 1-layer ViT on 16 x 16 images with 3 named classes (a pipeline answers names, sorted
    by score). Wide initial weights make its answers depend visibly on its input."""
    config = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=num_channels, hidden_size=16,
                                    num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=3,
                                    initializer_range=0.5, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    with isolated_torch_rng(0):
        return transformers.ViTForImageClassification(config).eval()


def processor(mean=0.5, std=0.5, channels=3):
    return transformers.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[mean] * channels,
                                          image_std=[std] * channels)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(folder, model, processor): the tiny ViT and its processor saved as a user would share them."""
    folder = tmp_path_factory.mktemp("vit")
    model, proc = tiny_vit(), processor()
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder, model, proc


@pytest.fixture(scope="module")
def digits_images(digits):
    return digits[1].inputs()[:12]  # uint8 8 x 8 x 1: resized and made RGB on the way in


def reference(model, proc, images):
    """The author's own recipe, written out: decode as PIL RGB, run the processor, softmax the logits."""
    from PIL import Image

    rgb = [Image.fromarray(x[..., 0]).convert("RGB") for x in images]
    with torch.no_grad():
        return torch.softmax(model(**proc(images=rgb, return_tensors="pt")).logits, 1).numpy()


def test_answers_equal_the_model_with_its_processor(saved, digits_images):
    _, model, proc = saved
    suspect = TransformersImageSuspect(model, proc, batch_size=5)
    model.train()
    probs = suspect.query(digits_images)
    assert model.training  # the caller's mode is restored
    model.eval()
    assert isinstance(suspect, Suspect) and suspect.num_classes == 3 and suspect.queries == 12
    assert np.allclose(probs, reference(model, proc, digits_images), atol=1e-5)
    labels = suspect.with_outputs("labels")
    assert np.array_equal(labels.query(digits_images), probs.argmax(1)) and labels.queries == 12
    rgb = np.repeat(digits_images, 3, axis=-1)
    assert np.allclose(suspect.query(rgb), probs, atol=1e-6)  # grey is sent as RGB, as PIL converts it
    record = json.loads(json.dumps(suspect.describe()))
    assert record["kind"] == "TransformersImageSuspect" and record["image_processor"].startswith("ViTImageProcessor")
    assert suspect.budget_left is None


def test_the_declared_processor_matters(saved, digits_images):
    _, model, proc = saved
    own = TransformersImageSuspect(model, proc).query(digits_images)
    other = TransformersImageSuspect(model, processor(mean=0.0, std=1.0)).query(digits_images)
    assert np.abs(own - other).max() > 0.3  # a different normalisation visibly changes the answers
    with pytest.raises(SuspectError, match="needs the model's image processor.*does not guess"):
        TransformersImageSuspect(model)


def test_pipeline_scores_are_ordered_by_label_id(saved, digits_images):
    _, model, proc = saved
    pipe = transformers.pipeline("image-classification", model=model, image_processor=proc)
    suspect = TransformersImageSuspect(pipe, batch_size=4)
    expected = TransformersImageSuspect(model, proc).query(digits_images)
    assert np.allclose(suspect.query(digits_images), expected, atol=1e-5) and suspect.queries == 12
    assert suspect.describe()["pipeline"] and suspect.with_outputs("labels").query(digits_images).shape == (12,)


def test_refusals_come_before_any_query(saved):
    _, model, proc = saved
    suspect = TransformersImageSuspect(model, proc)
    with pytest.raises(SuspectError, match="uint8"):
        suspect.query(np.zeros((2, 8, 8, 3), dtype=np.float32))
    grey_model = TransformersImageSuspect(tiny_vit(num_channels=1), processor(channels=1))
    with pytest.raises(SuspectError, match="takes 1-channel images"):
        grey_model.query(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    assert grey_model.query(np.zeros((2, 8, 8, 1), dtype=np.uint8)).shape == (2, 3)
    assert suspect.queries == 0 and grey_model.queries == 2
    with pytest.raises(SuspectError, match="outputs must be"):
        TransformersImageSuspect(model, proc, outputs="logits")


def test_loader_reads_image_and_text_folders(saved, digits_images, tmp_path):
    folder, model, proc = saved
    assert suspect_kind(folder) == "transformers-image"
    suspect = load_suspect(folder, outputs="labels", batch_size=3, max_length=None)
    assert isinstance(suspect, TransformersImageSuspect) and suspect.outputs == "labels"
    assert np.array_equal(suspect.query(digits_images), reference(model, proc, digits_images).argmax(1))
    with pytest.raises(ParameterError, match="layout do not apply to the transformers-image model"):
        load_suspect(folder, layout="NCHW")
    bare = tmp_path / "no_processor"
    model.save_pretrained(bare)
    with pytest.raises(SuspectError, match="holds no image processor"):
        load_suspect(bare)
    encoder = tmp_path / "encoder"
    transformers.ViTModel(model.config).save_pretrained(encoder)
    with pytest.raises(DataFormatError, match="is a ViTModel .*not a classifier"):
        load_suspect(encoder)


def test_loader_reads_a_text_classifier_folder(tmp_path):
    from datamark.models.text import minilm_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                     num_labels=2)
    with isolated_torch_rng(0):
        transformers.BertForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert suspect_kind(tmp_path) == "transformers-text"
    suspect = load_suspect(tmp_path, max_length=32)
    assert isinstance(suspect, TransformersSuspect) and suspect.max_length == 32
    assert suspect.query(np.array(["a fine film", "dull"], dtype=object)).shape == (2, 2)
