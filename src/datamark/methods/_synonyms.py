"""Greedy word-level adversarial perturbation of text that keeps its meaning: the text analogue of ``_pgd.py``.

Clean-label watermarks first make the marked examples *hard* for a model to classify from their natural
features, so that a model trained on them leans on the trigger instead (Turner et al. 2019). On text, Tang et al.
(2023, "Did You Train on My Dataset? Towards Public Dataset Protection with Clean-Label Backdoor Watermarking")
do this with meaning-preserving word edits; :func:`synonym_attack` is that step. Each round it tries, on every
sentence still improving, every single edit of two kinds:

* **substitution** of a content word by a WordNet synonym of the same part of speech (PWWS, Ren et al. 2019;
  TextFooler, Jin et al. 2020), inflected like the original (``films`` -> ``movies``, ``loved`` -> ``enjoyed``)
  with lemminflect and cased like it. Stop words, proper nouns, PTB tokens (``-LRB-``, ``'s``, ``n't``), numbers,
  tokens with any non-letter and words under three letters are never touched; a word changes at most once;
* **insertion of a modifier**: a neutral intensifier adverb before an adjective or a content verb
  (``a good film`` -> ``a really good film``), or, after a determiner, an adjective before a noun drawn from
  the WordNet synonyms and similar-tos of the sentence's own adjectives (reinforcing what it already says).

Edits that would need ``a``/``an`` to change are skipped (the article is a stop word, left as it is). The edits
are scored with the caller's ``loss_fn`` in one batch across all sentences; each sentence then takes, among its
edits that *raise* the loss, the highest-loss one whose sentence embedding (all-MiniLM-L6-v2,
:class:`~datamark.models.sentence.SentenceEncoder`) keeps cosine similarity ``>= min_similarity`` to the
**original** sentence. Embeddings, the cost centre, are computed only for the top candidates: at most
``similarity_checks`` per sentence and round, in doubling chunks (1, 1, 2, 4, 8), one encoder batch across all
sentences per chunk, since the highest-loss candidate keeps the bound ~80% of the time on SST-2. A sentence
stops after ``max_changes`` edits or when no edit both raises the loss and keeps the meaning, so the loss never
decreases and every returned sentence keeps the similarity bound. Labels are not touched. Ties in loss are
broken by a local generator (``seed``): the result is deterministic for a seed.

WordNet look-ups and inflection live in :mod:`datamark.methods._wordnet`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import _nltk
from .._progress import progress_bar
from ..exceptions import ParameterError
from ._pgd import frozen_eval
from ._wordnet import inflect, lemma_of, synonyms

#: Intensifiers inserted before adjectives and verbs: they strengthen but never flip or hedge what a sentence
#: says (no downtoners like "rather", "fairly"; "very", "so", "too" are NLTK stop words, left alone).
NEUTRAL_ADVERBS = ("really", "truly", "genuinely", "certainly", "definitely", "simply", "absolutely")
_WN_POS = {"NN": "noun", "NNS": "noun", "VB": "verb", "VBD": "verb", "VBG": "verb", "VBN": "verb", "VBP": "verb",
           "VBZ": "verb", "JJ": "adj", "JJR": "adj", "JJS": "adj", "RB": "adv", "RBR": "adv", "RBS": "adv"}
_VERBS = frozenset({"VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})
LossFn = Callable[[list[str], np.ndarray], np.ndarray]


def _cased(word: str, like: str) -> str:
    return word.upper() if len(like) > 1 and like.isupper() else word.capitalize() if like[0].isupper() else word


def _article_ok(tokens: Sequence[str], j: int, word: str) -> bool:
    """False when the token before position ``j`` is 'a'/'an' and would have to change for ``word``."""
    prev = tokens[j - 1].lower() if j > 0 else ""
    return prev not in ("a", "an") or prev == ("an" if word[0].lower() in "aeiou" else "a")


@dataclass
class _State:
    """One sentence under attack: its tokens, their tags, which may still change, and its running tallies."""

    tokens: list[str]
    tags: list[str]
    ids: list[int]  # original position, or a negative id for an inserted modifier
    locked: list[bool]
    loss: float
    modified: set[int] = field(default_factory=set)  # ids of tokens that already received a modifier
    banned: set[tuple[str, int, str]] = field(default_factory=set)
    substitutions: int = 0
    insertions: int = 0
    similarity: float = 1.0
    active: bool = True

    def candidates(self, stop: frozenset[str], adverbs: Sequence[str], k: int) -> dict[str, tuple[str, int, str]]:
        """Every allowed single edit as ``new text -> (kind, position, word)`` (first edit wins a duplicate)."""
        out: dict[str, tuple[str, int, str]] = {}
        toks, tags = self.tokens, self.tags
        content = [len(t) > 2 and t.isalpha() and t.lower() not in stop for t in toks]

        def add(kind: str, j: int, word: str) -> None:
            if (kind, self.ids[j], word) in self.banned or not _article_ok(toks, j, word):
                return
            new = toks[:j] + [word] + toks[j + (kind == "sub"):]
            out.setdefault(" ".join(new), (kind, j, word))

        adjectives: dict[str, None] = {}
        for j, (tok, tag) in enumerate(zip(toks, tags, strict=True)):
            pos = _WN_POS.get(tag)
            lemma = lemma_of(tok.lower(), tag, pos) if content[j] and pos and not self.locked[j] else None
            if lemma is None:
                continue
            if pos == "adj":
                adjectives.update((w, None) for w in synonyms(lemma, "adj", similar=True)[:k])
            for syn in synonyms(lemma, pos)[:k]:
                word = inflect(syn, tag)
                if word and word.lower() != tok.lower() and word not in stop:
                    add("sub", j, _cased(word, tok))
        present = {t.lower() for t in toks}
        for j in range(1, len(toks)):
            if not content[j] or self.ids[j] in self.modified or min(self.ids[j - 1:j + 1]) < 0:
                continue
            if (tags[j] == "JJ" or tags[j] in _VERBS) and toks[j - 1].isalpha() and toks[j - 1].lower() != "to" \
                    and not tags[j - 1].startswith(("RB", "JJ")):  # no "to really go", ", really er", "big really"
                for adverb in [a for a in adverbs if a not in present]:
                    add("ins", j, adverb)
            elif tags[j] in ("NN", "NNS") and tags[j - 1] in ("DT", "PRP$"):
                for adjective in [a for a in adjectives if a not in present][:k]:
                    add("ins", j, adjective)
        return out

    def apply(self, kind: str, j: int, word: str) -> None:
        if kind == "sub":
            self.tokens[j], self.locked[j] = word, True
            self.substitutions += 1
            return
        self.modified.add(self.ids[j])
        self.insertions += 1
        tag = "RB" if self.tags[j] == "JJ" or self.tags[j] in _VERBS else "JJ"
        for seq, value in ((self.tokens, word), (self.tags, tag), (self.ids, -self.insertions), (self.locked, True)):
            seq.insert(j, value)


@dataclass(frozen=True)
class SynonymReport:
    """What :func:`synonym_attack` did, per sentence, and what it cost.

    ``similarity`` is the cosine similarity of each result to its original (1.0 where unchanged); ``loss_before``
    and ``loss_after`` are the caller's loss on the original and on the result.
    """

    substitutions: np.ndarray
    insertions: np.ndarray
    similarity: np.ndarray
    loss_before: np.ndarray
    loss_after: np.ndarray
    seconds: float

    @property
    def changes(self) -> np.ndarray:
        """Edits per sentence (substitutions plus insertions)."""
        return self.substitutions + self.insertions

    def summary(self) -> dict[str, float | None]:
        """Means for a log or a key (None where there is nothing to average: no sentence, none changed)."""
        changed, gain = self.changes > 0, self.loss_after - self.loss_before
        return {"sentences": len(gain), "mean_changes": _mean(self.changes),
                "mean_substitutions": _mean(self.substitutions), "mean_insertions": _mean(self.insertions),
                "fraction_changed": _mean(changed), "mean_similarity_changed": _mean(self.similarity[changed]),
                "mean_loss_increase": _mean(gain), "fraction_loss_increased": _mean(gain > 0),
                "seconds": self.seconds, "seconds_per_sentence": self.seconds / max(len(gain), 1)}


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _losses(loss_fn: LossFn, texts: list[str], labels: np.ndarray, batch_size: int) -> np.ndarray:
    """``loss_fn`` over ``texts`` in batches, checked to give one finite float per text."""
    parts = []
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo:lo + batch_size]
        value = loss_fn(chunk, labels[lo:lo + batch_size])
        value = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
        if value.shape != (len(chunk),) or not np.isfinite(value).all():
            raise ParameterError(f"The 'loss_fn' of synonym_attack must return one finite loss per text (shape "
                                 f"({len(chunk)},)); got shape {value.shape}. Return per-example losses "
                                 f"(reduction='none'), not their mean.")
        parts.append(value)
    return np.concatenate(parts) if parts else np.zeros(0)


def classifier_loss(model: nn.Module, device: str | torch.device = "cpu") -> LossFn:
    """A ``loss_fn`` for :func:`synonym_attack` from a datamark text classifier (``tokenize`` + ``forward``).

    Per-example cross-entropy of the true labels, in eval mode without gradients (the model's mode is restored).
    """
    def loss_fn(texts: list[str], labels: np.ndarray) -> np.ndarray:
        with torch.no_grad(), frozen_eval(model):
            tokens = {k: v.to(device) for k, v in model.tokenize(texts).items()}
            y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=device)
            return F.cross_entropy(model(**tokens).float(), y, reduction="none").cpu().numpy()
    return loss_fn


def _check(min_similarity: float, max_changes: int, max_candidates: int, similarity_checks: int,
           batch_size: int) -> None:
    if not (isinstance(min_similarity, (int, float)) and 0.0 < float(min_similarity) <= 1.0):
        raise ParameterError(f"The 'min_similarity' of synonym_attack must be in (0, 1] (a cosine similarity; "
                             f"0.85 keeps the meaning); got {min_similarity!r}.")
    for name, value in (("max_changes", max_changes), ("max_candidates", max_candidates),
                        ("similarity_checks", similarity_checks), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ParameterError(f"The '{name}' of synonym_attack must be a positive integer; got {value!r}.")


def synonym_attack(texts: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray, loss_fn: LossFn, *,
                   min_similarity: float = 0.85, max_changes: int = 5, max_candidates: int = 12,
                   similarity_checks: int = 16, encoder: Any = None, seed: int | np.random.Generator = 0,
                   batch_size: int = 512, progress: bool = False) -> tuple[np.ndarray, SynonymReport]:
    """Raise ``loss_fn`` on each text by greedy synonym substitution and modifier insertion that keeps its meaning.

    Args:
        texts: Whitespace-tokenised sentences (a 1-d object array or a sequence of ``str``).
        labels: Their labels, passed to ``loss_fn`` unchanged (the attack never changes a label).
        loss_fn: ``loss_fn(texts, labels) -> per-text loss`` of the base model on the true labels; higher is
            more adversarial. Called on batches of up to ``batch_size`` candidate texts.
        min_similarity: Smallest cosine similarity, to the original, of an accepted sentence (0.85 after
            TextFooler-style attacks; MiniLM scores paraphrases ~0.9, unrelated sentences < 0.3).
        max_changes: Most edits per sentence.
        max_candidates: Most WordNet synonyms tried per word (and adjectives per noun slot).
        similarity_checks: Most loss-raising candidates embedded per sentence per round before giving up.
        encoder: A :class:`~datamark.models.sentence.SentenceEncoder` (or anything with ``encode(texts)`` giving
            unit-norm rows); a CPU one by default.
        seed: An int, or a numpy Generator (e.g. ``_rng.generator(secret, "synonyms")``), for breaking ties.
        batch_size: Texts per ``loss_fn`` call.
        progress: Show a progress bar of rounds.

    Returns:
        The new texts (a 1-d object array; an unchanged text is the original string) and a
        :class:`SynonymReport`.
    """
    _check(min_similarity, max_changes, max_candidates, similarity_checks, batch_size)
    from ..models.sentence import SentenceEncoder, _as_texts

    texts = _as_texts(texts, "The 'texts' of synonym_attack")
    labels = np.asarray(labels)
    if labels.shape != (len(texts),):
        raise ParameterError(f"The 'labels' of synonym_attack must hold one label per text ({len(texts)}); got "
                             f"shape {labels.shape}.")
    gen = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    encoder = SentenceEncoder() if encoder is None else encoder
    stop = _nltk.stopwords()
    adverbs = tuple(a for a in NEUTRAL_ADVERBS if a not in stop)
    start = time.perf_counter()
    loss0 = _losses(loss_fn, texts, labels, batch_size)
    original = encoder.encode(texts)
    states = []
    for text, loss in zip(texts, loss0, strict=True):
        tokens = text.split()
        tags = [tag for _, tag in _nltk.pos_tag(tokens)]
        states.append(_State(tokens, tags, list(range(len(tokens))), [False] * len(tokens), float(loss)))
    with progress_bar("Synonym attack", max_changes, enabled=progress, unit="round") as bar:
        for _ in range(max_changes):
            active = [i for i, s in enumerate(states) if s.active]
            if not active:
                break
            cands = {i: states[i].candidates(stop, adverbs, max_candidates) for i in active}
            flat = [(i, t) for i in active for t in cands[i]]
            losses = _losses(loss_fn, [t for _, t in flat], labels[[i for i, _ in flat]], batch_size)
            queues: dict[int, list[tuple[str, float]]] = {}
            at = 0
            for i in active:
                n = len(cands[i])
                loss, keys = losses[at:at + n], gen.random(n)
                queues[i] = [(flat[at + j][1], float(loss[j])) for j in np.lexsort((keys, -loss))
                             if loss[j] > states[i].loss]
                at += n
            _accept_best(states, queues, cands, original, encoder, min_similarity, similarity_checks)
            bar.advance()
    out = np.empty(len(texts), dtype=object)
    for i, (text, s) in enumerate(zip(texts, states, strict=True)):
        out[i] = " ".join(s.tokens) if s.substitutions + s.insertions else text
    report = SynonymReport(np.array([s.substitutions for s in states], dtype=np.int64),
                           np.array([s.insertions for s in states], dtype=np.int64),
                           np.array([s.similarity for s in states], dtype=np.float32), loss0,
                           np.array([s.loss for s in states]), time.perf_counter() - start)
    return out, report


def _accept_best(states: list[_State], queues: dict[int, list[tuple[str, float]]],
                 cands: dict[int, dict[str, tuple[str, int, str]]], original: np.ndarray, encoder: Any,
                 min_similarity: float, similarity_checks: int) -> None:
    """For each sentence, apply its highest-loss candidate that keeps the similarity bound, embedding in chunks."""
    accepted: set[int] = set()
    pending = [i for i, queue in queues.items() if queue]
    checked = 0
    while pending and checked < similarity_checks:
        step = min(max(1, checked), similarity_checks - checked)  # 1, 1, 2, 4, 8...: the top one usually passes
        batch = [(i, text, loss) for i in pending for text, loss in queues[i][checked:checked + step]]
        emb = encoder.encode([text for _, text, _ in batch])
        sims = np.einsum("ij,ij->i", emb, original[[i for i, _, _ in batch]])
        for (i, text, loss), sim in zip(batch, sims, strict=True):
            if i in accepted:  # queue order is loss order: the first that keeps the meaning wins
                continue
            state, (kind, j, word) = states[i], cands[i][text]
            if sim >= min_similarity:
                state.apply(kind, j, word)
                state.loss, state.similarity = loss, float(sim)
                accepted.add(i)
            else:  # other edits rarely bring it back above the bound: embed it once only
                state.banned.add((kind, state.ids[j], word))
        checked += step
        pending = [i for i in pending if i not in accepted and len(queues[i]) > checked]
    for i in queues:  # no loss-raising edit that keeps the meaning: this sentence is done
        states[i].active = i in accepted
