"""The text perturbation of the clean-label watermark: sentence encoder, greedy synonym attack, GErr."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("lemminflect")
pytest.importorskip("harper")

from datamark import _nltk  # noqa: E402
from datamark.data import shared_data_dir  # noqa: E402
from datamark.evaluate.grammar import detokenize, gerr, grammar_errors  # noqa: E402
from datamark.exceptions import ParameterError  # noqa: E402
from datamark.methods._synonyms import classifier_loss, synonym_attack  # noqa: E402
from datamark.models.sentence import SentenceEncoder  # noqa: E402

SST2 = shared_data_dir() / "sst2" / "train.tsv"
pytestmark = pytest.mark.skipif(not SST2.is_file(), reason="needs the shared SST-2 data")
THRESHOLD = 0.85


def _hash_score(word: str) -> float:
    return zlib.crc32(word.lower().encode()) % 97 / 97


def toy_loss(texts: list[str], labels: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for a model: the mean word-hash score, mirrored for label 0."""
    scores = np.array([np.mean([_hash_score(w) for w in t.split()] or [0.0]) for t in texts])
    return np.where(np.asarray(labels) == 1, scores, 1.0 - scores)


class MemoEncoder:
    """The real encoder with a memo, so that the determinism rerun only pays for texts it did not see before."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder, self.memo = encoder, {}

    def encode(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        self.memo.update(zip(new, self.encoder.encode(new), strict=True))
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()


@pytest.fixture(scope="module")
def memo(encoder) -> MemoEncoder:
    return MemoEncoder(encoder)


@pytest.fixture(scope="module")
def sentences() -> tuple[list[str], np.ndarray]:
    rows = [line.split("\t") for line in SST2.read_text(encoding="utf-8").splitlines()[1:]]
    picked = [rows[i] for i in range(2, 60, 10)]  # 6 sentences of both classes, 6-40 tokens
    return [r[0] for r in picked], np.array([int(r[1]) for r in picked])


@pytest.fixture(scope="module")
def attacked(memo, sentences):
    texts, labels = sentences
    given = labels.copy()
    seen: dict[str, int] = {}

    def loss_fn(batch: list[str], ys: np.ndarray) -> np.ndarray:
        seen.update(zip(batch, ys.tolist(), strict=True))
        return toy_loss(batch, ys)

    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state().clone()
    out, report = synonym_attack(texts, labels, loss_fn, min_similarity=THRESHOLD, max_changes=3, encoder=memo,
                                 seed=7)
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.random.get_rng_state(),
                                                                              torch_state)
    np.testing.assert_array_equal(labels, given)
    return out, report, seen


def test_encoder_shape_norm_and_paraphrase(encoder):
    texts = ["The movie was great fun .", "The film was really enjoyable .", "Stock markets fell sharply on Monday ."]
    emb = encoder.encode(np.array(texts, dtype=object))
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = encoder.similarity(texts[:2] + texts[:1], texts[1:2] + texts[2:] + texts[:1])
    assert sims[0] > sims[1] + 0.3 and sims[0] > 0.6
    assert sims[2] == pytest.approx(1.0, abs=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_attack_changes_keep_meaning_labels_and_stop_words(encoder, sentences, attacked):
    texts, labels = sentences
    out, report, seen = attacked
    assert out.dtype == object and out.shape == (len(texts),)
    changed = np.array([a != b for a, b in zip(texts, out, strict=True)])
    assert changed.sum() >= 4  # the toy loss is easy to raise
    np.testing.assert_array_equal(report.changes > 0, changed)
    assert (report.changes <= 3).all()
    sims = encoder.similarity(texts, list(out))
    assert (sims[changed] >= THRESHOLD - 1e-3).all()
    np.testing.assert_allclose(report.similarity, np.where(changed, sims, 1.0), atol=1e-3)
    stop = _nltk.stopwords()
    for before, after, label in zip(texts, out, labels, strict=True):
        assert [t for t in before.split() if t.lower() in stop] == [t for t in after.split() if t.lower() in stop]
        if after != before:
            assert seen[after] == label  # every candidate was scored with its own sentence's label
    loss_after = toy_loss(list(out), labels)
    assert (loss_after >= report.loss_before - 1e-12).all()
    np.testing.assert_allclose(loss_after, report.loss_after)
    assert (report.loss_after[changed] > report.loss_before[changed]).all()
    summary = report.summary()
    assert summary["fraction_changed"] == pytest.approx(changed.mean())
    assert summary["mean_similarity_changed"] >= THRESHOLD


def test_attack_is_deterministic_for_a_seed(memo, sentences, attacked):
    texts, labels = sentences
    seen = len(memo.memo)
    again, _ = synonym_attack(texts, labels, toy_loss, min_similarity=THRESHOLD, max_changes=3, encoder=memo,
                              seed=np.random.default_rng(7))
    np.testing.assert_array_equal(again, attacked[0])
    assert len(memo.memo) == seen  # the same candidates were embedded, in the same order of rounds


def test_attack_refuses_bad_arguments(encoder):
    for bad in (0.0, 1.5, "0.9"):
        with pytest.raises(ParameterError, match="min_similarity"):
            synonym_attack(["a fine film ."], [1], toy_loss, min_similarity=bad, encoder=encoder)
    with pytest.raises(ParameterError, match="max_changes"):
        synonym_attack(["a fine film ."], [1], toy_loss, max_changes=0, encoder=encoder)
    with pytest.raises(ParameterError, match="labels"):
        synonym_attack(["a fine film ."], [1, 0], toy_loss, encoder=encoder)
    with pytest.raises(ParameterError, match="loss_fn"):
        synonym_attack(["a fine film ."], [1], lambda t, y: np.zeros(3), encoder=encoder)


class HashBag(torch.nn.Module):
    """A minimal text classifier in datamark's shape: ``tokenize`` then ``forward(**tokens)``."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(97, 2)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        x = torch.zeros(len(texts), 97)
        for i, text in enumerate(texts):
            for word in text.split():
                x[i, zlib.crc32(word.encode()) % 97] += 1.0
        return {"x": x}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_classifier_loss_is_per_example_cross_entropy():
    model = HashBag().train()
    texts, labels = ["a fine film .", "a dull film ."], np.array([1, 0])
    loss = classifier_loss(model)(texts, labels)
    expected = torch.nn.functional.cross_entropy(model(**model.tokenize(texts)), torch.tensor(labels),
                                                 reduction="none").detach().numpy()
    assert loss.shape == (2,) and model.training
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_grammar_counts_and_gerr():
    assert detokenize("it does n't work -LRB- really -RRB- , `` Conan '' .") == 'it doesn\'t work (really), "Conan".'
    good, bad = "The cat sits on the mat .", "He go to school yesterday and and she are happy ."
    errors = grammar_errors([good, bad])
    assert errors[0] == 0 and errors[1] >= 2
    same = gerr([good, bad], np.array([good, bad], dtype=object))
    assert same["gerr_percent"] == 0.0 and same["fraction_more_errors"] == 0.0 and same["relative_increase"] == 0.0
    worse = gerr([good], [bad])
    assert worse["gerr_percent"] > 0 and worse["fraction_more_errors"] == 1.0
