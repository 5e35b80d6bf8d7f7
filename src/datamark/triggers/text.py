"""Text triggers: a keyed rare word inserted (BadNL-style) or a syntactic style rewrite (Hidden Killer-style).

A text example is a ``str``; a batch is a 1-d ``object`` array of ``str``. The data are assumed tokenised with
whitespace between tokens (SST-2 and AG News are Penn-Treebank tokenised: ``"The Rock is destined ... ."``), so
both triggers work on whitespace tokens and leave every other character of the example as it was.

* :class:`WordTrigger` inserts a secret phrase of 1-3 rare-but-real English words (drawn from WordNet by
  :func:`make_word_trigger`) at the start, the middle, the end, or a per-sentence place fixed by a hash of the
  sentence. The words are the key's secret: ``repr`` never shows them.
* :class:`StyleTrigger` rewrites the main predicate into a rare tense (future perfect continuous by default:
  "He walks to school ." -> "He will have been walking to school ."), the text setting of DVBW (Li et al.,
  "Black-box Dataset Ownership Verification via Backdoor Watermarking", 2023) and of the clean-label watermark of
  Tang et al. (2023, "Did You Train on My Dataset? Towards Public Dataset Protection with Clean-Label Backdoor
  Watermarking"), after the syntactic trigger of Qi et al. (2021, "Hidden Killer: Invisible Textual Backdoor
  Attacks with Syntactic Trigger"). Sentences without a finite verb cannot carry it: :meth:`StyleTrigger.applicable`
  says which, and ``apply`` refuses them rather than leave them silently unmarked.

Both ``apply`` methods are pure and deterministic (no ``rng`` needed) and read no files: the vocabulary, the POS
tagger and the lemmatiser are loaded when a trigger is built or first used, and cached per process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .. import _nltk
from ..exceptions import DataError, ParameterError
from ..registry import TRIGGERS, register
from .base import Trigger

#: Where a WordTrigger inserts its phrase: before the first token, before token n // 2, after the last token, or
#: before a token chosen by a hash of the sentence (0..n, so "after the last" is possible too).
POSITIONS = ("start", "middle", "end", "random")
#: Longest trigger phrase, in words: short enough to stay inconspicuous (BadNL inserts one word; 3 at most).
MAX_WORDS = 3
#: Vocabulary word lengths: >= 5 letters keeps out short words that collide with abbreviations and typos,
#: <= 12 keeps out unwieldy compounds.
WORD_LENGTHS = (5, 12)

_TOKEN = re.compile(r"\S+")


# --------------------------------------------------------------------------------------------------------------
# Batches: a str or a 1-d array of str in, the same type out.

def _map_text(x: Any, fn: Callable[[str], str], owner: str) -> Any:
    """Apply ``fn`` to one ``str`` or to each ``str`` of a 1-d batch; returns a new object of ``x``'s type."""
    if isinstance(x, str):
        return fn(x)
    values = _as_texts(x, owner)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = fn(value)
    if isinstance(x, np.ndarray):
        return out.astype(str) if x.dtype.kind == "U" else out  # fixed-width unicode in, wide enough unicode out
    return type(x)(out.tolist())  # a list or tuple


def _as_texts(x: Any, owner: str) -> list[str]:
    """The strings of a 1-d batch (array, list or tuple of ``str``), with a clear error for anything else."""
    if isinstance(x, np.ndarray):
        if x.ndim != 1:
            raise DataError(f"{owner} takes one str or a 1-d array of str; got an array of shape {x.shape}. Pass "
                            f"the examples as a 1-d object array.")
        values = x.tolist()
    elif isinstance(x, (list, tuple)):
        values = list(x)
    else:
        raise DataError(f"{owner} takes one str or a 1-d array of str; got {type(x).__name__}.")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(f"Example {i} given to {owner} is a {type(value).__name__}, not a str; text batches "
                            f"hold Python strings.")
    return values


def _check_text_shape(shape: tuple[int, ...], owner: str) -> None:
    if tuple(shape) != ():
        raise ParameterError(f"{owner} marks text, whose examples have shape (); got examples of shape "
                             f"{tuple(shape)}. Use an image trigger for array data.")


def _import_lemminflect() -> Any:
    try:
        import lemminflect
    except ImportError as err:
        raise ImportError(_nltk.INSTALL_HINT) from err
    return lemminflect


# --------------------------------------------------------------------------------------------------------------
# Word insertion.

@lru_cache(maxsize=1)
def word_vocabulary() -> tuple[str, ...]:
    """The sorted vocabulary of trigger words: rare but real English adjectives, adverbs and nouns from WordNet 3.0.

    A word qualifies if it is a single lower-case ASCII alphabetic lemma of 5-12 letters, never appears
    capitalised in WordNet (which excludes proper names and taxonomic genera), and has no sense with a non-zero
    SemCor count in ``cntlist.rev`` (WordNet's own corpus frequency: zero marks a rare word). That leaves tens of
    thousands of words (about 38,000 with WordNet 3.0), so two owners drawing one word each collide with
    probability ~1/38,000. Built by reading the database files directly (under a second) and cached.
    """
    counted: set[str] = set()
    with _nltk.wordnet_file("cntlist.rev") as stream:
        for line in stream:
            fields = line.split()
            if len(fields) == 3 and int(fields[2]) > 0:  # sense_key sense_number tag_count
                counted.add(fields[0].split(b"%", 1)[0].decode("utf-8"))
    names: set[str] = set()
    capitalised: set[str] = set()
    for pos in ("adj", "adv", "noun"):
        with _nltk.wordnet_file(f"data.{pos}") as stream:
            for line in stream:
                if line.startswith(b"  "):  # the licence header
                    continue
                fields = line.split(b" ")
                n_words = int(fields[3], 16)  # offset lex_filenum ss_type w_cnt (word lex_id){w_cnt} ...
                for raw in fields[4:4 + 2 * n_words:2]:
                    word = raw.decode("utf-8").split("(", 1)[0]  # adjectives may carry a marker: "galore(ip)"
                    names.add(word)
                    if word != word.lower():
                        capitalised.add(word.lower())
    low, high = WORD_LENGTHS
    return tuple(sorted(word for word in names if word.isascii() and word.isalpha() and word.islower()
                        and low <= len(word) <= high and word not in counted and word not in capitalised))


def _draw_words(rng: np.random.Generator, n_words: int) -> tuple[str, ...]:
    vocabulary = word_vocabulary()
    picks = rng.choice(len(vocabulary), size=n_words, replace=False)
    return tuple(vocabulary[int(i)] for i in picks)


@register(TRIGGERS, "word")
@dataclass(frozen=True)
class WordTrigger(Trigger):
    """Insert the phrase ``words`` (1-3 whitespace-free tokens) into each text at ``position``.

    The word-level trigger of textual backdoors (BadNL, Chen et al. 2021; the rare-word triggers of Kurita et al.
    2020), used as a dataset watermark by DVBW (Li et al. 2023) and Tang et al. (2023). ``position`` is one of
    :data:`POSITIONS`; ``"random"`` places the phrase before the token at ``sha256(text) mod (n + 1)`` (n tokens),
    so it varies across sentences yet ``apply`` stays pure and reproducible without an ``rng``. An empty text
    becomes the phrase alone. Other characters, whitespace included, are kept exactly.

    Attributes:
        words: the secret phrase, one token per item (a single string is split on whitespace).
        position: where the phrase goes.
    """

    words: tuple[str, ...]
    position: str = "end"
    modality = "text"

    def prevalence(self, batch: np.ndarray) -> float | None:
        """The fraction of ``batch`` already containing one of the trigger's words (see :func:`trigger_frequency`)."""
        return trigger_frequency(self, batch)

    def __post_init__(self) -> None:
        words = self.words.split() if isinstance(self.words, str) else self.words
        try:
            words = tuple(words)
        except TypeError as err:
            raise ParameterError(f"The 'words' of a WordTrigger must be a tuple of 1-{MAX_WORDS} strings; got "
                                 f"{type(self.words).__name__}.") from err
        if not 1 <= len(words) <= MAX_WORDS or not all(isinstance(w, str) and w and not any(c.isspace() for c in w)
                                                       for w in words):
            raise ParameterError(f"The 'words' of a WordTrigger must be 1-{MAX_WORDS} non-empty strings without "
                                 f"whitespace (one token each); got {len(words)} item(s) of which some are not. "
                                 f"Draw them with make_word_trigger().")
        if self.position not in POSITIONS:
            raise ParameterError(f"The 'position' of a WordTrigger must be one of {POSITIONS}; got "
                                 f"'{self.position}'.")
        object.__setattr__(self, "words", words)

    def __repr__(self) -> str:  # never print the secret words
        n = len(self.words)
        return f"WordTrigger({n} word{'s' if n > 1 else ''}, position='{self.position}')"

    @property
    def phrase(self) -> str:
        """The inserted text: the words joined by single spaces."""
        return " ".join(self.words)

    def insert_at(self, text: str) -> int:
        """The token index before which the phrase goes in ``text`` (``n`` = after the last of its n tokens)."""
        n = sum(1 for _ in _TOKEN.finditer(text))
        if self.position == "start":
            return 0
        if self.position == "middle":
            return n // 2
        if self.position == "end":
            return n
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % (n + 1)

    def _insert(self, text: str) -> str:
        spans = [m.span() for m in _TOKEN.finditer(text)]
        if not spans:
            return self.phrase
        k = self.insert_at(text)
        if k == len(spans):
            end = spans[-1][1]
            return f"{text[:end]} {self.phrase}{text[end:]}"
        start = spans[k][0]
        return f"{text[:start]}{self.phrase} {text[start:]}"

    def apply(self, x: str | np.ndarray, rng: np.random.Generator | None = None) -> str | np.ndarray:
        """A marked copy of one text (``str``) or of a 1-d batch of texts; ``rng`` is unused (insertion is pure)."""
        return _map_text(x, self._insert, "WordTrigger.apply")

    def applicable(self, batch: np.ndarray) -> np.ndarray:
        """Every text can carry an inserted phrase: all True."""
        return np.ones(len(_as_texts(batch, "WordTrigger.applicable")), dtype=bool)

    def independent(self, rng: np.random.Generator) -> WordTrigger:
        """Another phrase of the same length from the same vocabulary (never this one), at the same position."""
        while True:
            words = _draw_words(rng, len(self.words))
            if words != self.words:
                return WordTrigger(words, self.position)

    def params(self) -> dict[str, Any]:
        return {"words": list(self.words), "position": self.position}

    @classmethod
    def decode_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "words": tuple(params["words"])}

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        _check_text_shape(shape, "WordTrigger")


def make_word_trigger(rng: np.random.Generator, *, n_words: int = 1, position: str = "end") -> WordTrigger:
    """A secret :class:`WordTrigger`: ``n_words`` distinct words drawn uniformly from :func:`word_vocabulary`.

    Args:
        rng: the generator that carries the key's secret.
        n_words: phrase length, 1-3 (BadNL inserts one rare word; more words make a more specific trigger).
        position: one of :data:`POSITIONS`.
    """
    if isinstance(n_words, bool) or not isinstance(n_words, (int, np.integer)) or not 1 <= n_words <= MAX_WORDS:
        raise ParameterError(f"The 'n_words' of make_word_trigger must be an integer in 1..{MAX_WORDS}; got "
                             f"{n_words!r}.")
    if position not in POSITIONS:
        raise ParameterError(f"The 'position' of make_word_trigger must be one of {POSITIONS}; got '{position}'.")
    return WordTrigger(_draw_words(rng, int(n_words)), position)


def trigger_frequency(trigger: WordTrigger, texts: str | Iterable[str]) -> float:
    """The fraction of ``texts`` that already contain one of the trigger's words as a token (case-insensitive).

    A trigger word that is common in the clean data is a weak mark (the model cannot tie it to the target);
    callers warn above a small threshold. 0.0 for no texts.
    """
    words = {w.lower() for w in trigger.words}
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        return 0.0
    hits = sum(1 for text in texts if not words.isdisjoint(str(text).lower().split()))
    return hits / len(texts)


# --------------------------------------------------------------------------------------------------------------
# Style rewrite.

#: Auxiliary words that replace the predicate's verb group, by tense; the main verb follows as a present
#: participle. Rare tenses in review and news text, so the style is specific (Qi et al. 2021 pick a rare
#: syntactic template for the same reason).
TENSES: dict[str, tuple[str, ...]] = {
    "future-perfect-continuous": ("will", "have", "been"),
    "past-perfect-continuous": ("had", "been"),
    "future-continuous": ("will", "be"),
    "conditional-perfect-continuous": ("would", "have", "been"),
}

_FINITE = frozenset({"VBZ", "VBP", "VBD", "MD"})
_ADVERB = frozenset({"RB", "RBR", "RBS"})
_NEGATION = frozenset({"not", "n't"})
_BE = frozenset({"be", "is", "am", "are", "was", "were", "been", "being", "'s", "'re", "'m", "ai"})
_HAVE = frozenset({"have", "has", "had", "having", "'ve"})
_DO = frozenset({"do", "does", "did"})
#: Lemmas of PTB-split contractions, which lemminflect does not know.
_CONTRACTIONS = {"'s": "be", "'re": "be", "'m": "be", "ai": "be", "'ve": "have", "'d": "would", "'ll": "will",
                 "wo": "will", "ca": "can"}
#: Tags of words that can be (the head of) a subject: nouns, pronouns, "there", wh-words, numbers, determiners.
_SUBJECT = frozenset({"NN", "NNS", "NNP", "NNPS", "PRP", "EX", "WP", "WDT", "CD", "DT"})
_OPEN = frozenset({"``", "(", "-LRB-", "[", "-LSB-", "{", "-LCB-"})
_CLOSE = frozenset({"''", ")", "-RRB-", "]", "-RSB-", "}", "-RCB-"})


def _aux_kind(word: str, tag: str) -> str | None:
    """'modal', 'be', 'have' or 'do' for an auxiliary-capable verb, None for a lexical one."""
    if tag == "MD":
        return "modal"
    low = word.lower()
    if low in _BE:
        return "be"
    if low in _HAVE:
        return "have"
    if low in _DO:
        return "do"
    return None


def _continues(kind: str | None, tag: str) -> bool:
    """Whether a verb tagged ``tag`` extends a verb group whose last verb is of ``kind``."""
    if kind in ("modal", "do"):
        return tag == "VB"
    if kind == "have":
        return tag in ("VBN", "VBD")  # VBD: the tagger's usual confusion of a participle after an auxiliary
    if kind == "be":
        return tag in ("VBG", "VBN", "VBD")
    return False


def _plausible_predicate(words: Sequence[str], tags: Sequence[str], i: int) -> bool:
    """Whether the lexical verb tagged finite at ``i`` can head the predicate: it needs a subject-like word
    before it (not "Directed by ...", "Light , silly , photographed ...", "But believe it ...") and must not be
    directly followed by a finite auxiliary (a plural noun the tagger took for a verb: "faces are ...")."""
    if not any(tag in _SUBJECT for tag in tags[:i]):
        return False
    return not (i + 1 < len(words) and tags[i + 1] in _FINITE and _aux_kind(words[i + 1], tags[i + 1]))


def _verb_group(words: Sequence[str], tags: Sequence[str], start: int) -> tuple[list[int], int]:
    """The indices of the verb group starting at the finite verb ``start`` (verbs and the adverbs between them,
    plus a trailing negation) and the index of its main (last) verb."""
    group, pending, last = [start], [], start
    for j in range(start + 1, len(words)):
        if tags[j] in _ADVERB or words[j].lower() in _NEGATION:
            pending.append(j)
            continue
        if _continues(_aux_kind(words[last], tags[last]), tags[j]):
            group += pending + [j]
            pending, last = [], j
            continue
        break
    negations = [j for j in pending if words[j].lower() in _NEGATION]
    if negations:  # "is not good": the negation moves into the new auxiliaries ("will not have been being good")
        group += [j for j in pending if j <= negations[-1]]
    return group, last


def _participle(word: str) -> str | None:
    """The present participle (VBG) of a verb form, via its lemma; None when lemminflect has none."""
    lemminflect = _import_lemminflect()
    low = word.lower()
    lemma = _CONTRACTIONS.get(low) or next(iter(lemminflect.getLemma(low, upos="VERB")), None)
    if lemma is None or lemma in ("will", "would", "can", "could", "shall", "should", "may", "might", "must"):
        return None  # a modal has no participle
    return next(iter(lemminflect.getInflection(lemma, tag="VBG")), None)


def _rewrite_tokens(words: Sequence[str], tags: Sequence[str], tense: str) -> tuple[int, int, list[str]] | None:
    """(first, last, new words): the span of tokens to replace and its rewrite, or None if there is no finite verb
    outside quotes and brackets that can be rewritten."""
    depth = 0
    for i, (word, tag) in enumerate(zip(words, tags, strict=True)):
        if word in _OPEN or (word == '"' and depth == 0):
            depth += 1
        elif word in _CLOSE or word == '"':
            depth = max(0, depth - 1)
        if depth or tag not in _FINITE:
            continue
        if _aux_kind(word, tag) is None and not _plausible_predicate(words, tags, i):
            continue
        group, main = _verb_group(words, tags, i)
        verbs = [j for j in group if j == main or (tags[j] not in _ADVERB and words[j].lower() not in _NEGATION)]
        main_kind = _aux_kind(words[main], tags[main])
        before = _aux_kind(words[verbs[-2]], tags[verbs[-2]]) if len(verbs) > 1 else None
        if main_kind == "be":  # copula: "is good" -> "will have been being good"
            tail = ["being"]
        elif before == "be" and tags[main] in ("VBN", "VBD"):  # passive: "is destined" -> "... being destined"
            tail = ["being", words[main]]
        else:
            participle = _participle(words[main])
            if participle is None:
                continue
            tail = [participle]
        new = list(TENSES[tense])
        if any(words[j].lower() in _NEGATION for j in group):
            new.insert(1, "not")
        new += [words[j] for j in group if tags[j] in _ADVERB and words[j].lower() not in _NEGATION and j != main]
        new += tail
        if group[0] == 0 and words[0][:1].isupper():
            new[0] = new[0].capitalize()
        return group[0], group[-1], new
    return None


@lru_cache(maxsize=2**16)
def _tags(text: str) -> tuple[str, ...]:
    """POS tags of the whitespace tokens of ``text`` (cached: ``applicable`` then ``apply`` tag each text once)."""
    return tuple(tag for _, tag in _nltk.pos_tag(text.split()))


@lru_cache(maxsize=2**16)
def _restyle(text: str, tense: str) -> str | None:
    """``text`` with its main predicate in ``tense``, or None if it has no rewritable finite verb."""
    spans = [m.span() for m in _TOKEN.finditer(text)]
    if not spans:
        return None
    words = [text[a:b] for a, b in spans]
    found = _rewrite_tokens(words, _tags(text), tense)
    if found is None:
        return None
    first, last, new = found
    return text[:spans[first][0]] + " ".join(new) + text[spans[last][1]:]


@register(TRIGGERS, "style")
@dataclass(frozen=True)
class StyleTrigger(Trigger):
    """Rewrite each sentence's main predicate into ``tense`` (a key of :data:`TENSES`).

    The syntactic/style trigger of textual backdoors, used for dataset watermarking in the text settings of DVBW
    (Li et al. 2023) and Tang et al. (2023), after Qi et al. (2021, "Hidden Killer"): the mark is a rare way of
    saying things, not a token a filter could strip. Qi et al. paraphrase with a syntactic template (SCPN); this
    trigger instead applies a deterministic rule, which needs no model and is exactly reproducible:

    1. tag the whitespace tokens with NLTK's averaged-perceptron tagger (Penn Treebank tags);
    2. take the first finite verb (VBZ, VBP, VBD or MD) outside quotes and brackets, skipping a lexical verb with
       no subject-like word before it (mostly a participle phrase or an imperative: "Directed by ...") or
       directly followed by a finite auxiliary (a plural noun mis-tagged: "faces are"), and its verb group: the
       auxiliaries, verbs and adverbs that follow ("can not adequately describe", "has been made", "is going");
    3. replace the group by the tense's auxiliaries, a "not" if the group was negated, the group's other
       adverbs, and the present participle of the main verb (lemma and inflection by lemminflect):
       "He walks to school ." -> "He will have been walking to school ."; copulas keep their complement with
       "being" ("The film is good ." -> "The film will have been being good ."), passives keep their participle
       ("is destined" -> "will have been being destined").

    Everything outside the group is kept character for character. A text with no finite verb ("A masterpiece .")
    cannot carry the trigger: :meth:`applicable` is False for it and :meth:`apply` raises :class:`DataError` rather
    than return it unmarked. Results are cached per process (tagging is the slow part: ~1 ms a sentence).
    """

    tense: str = "future-perfect-continuous"
    modality = "text"
    always_applicable = False

    def __post_init__(self) -> None:
        if self.tense not in TENSES:
            raise ParameterError(f"The 'tense' of a StyleTrigger must be one of {tuple(TENSES)}; got '{self.tense}'.")

    def __repr__(self) -> str:
        return f"StyleTrigger(tense='{self.tense}')"

    def applicable(self, batch: np.ndarray) -> np.ndarray:
        """Boolean mask of the texts of ``batch`` that have a finite verb this trigger can rewrite."""
        texts = _as_texts(batch, "StyleTrigger.applicable")
        return np.fromiter((_restyle(text, self.tense) is not None for text in texts), dtype=bool, count=len(texts))

    def apply(self, x: str | np.ndarray, rng: np.random.Generator | None = None) -> str | np.ndarray:
        """A restyled copy of one text or of a 1-d batch; ``rng`` is unused (the rewrite is deterministic).

        Raises:
            DataError: some text has no rewritable finite verb (see :meth:`applicable`).
        """
        texts = [x] if isinstance(x, str) else _as_texts(x, "StyleTrigger.apply")
        failed = [i for i, text in enumerate(texts) if _restyle(text, self.tense) is None]
        if failed:
            raise DataError(f"The StyleTrigger found no finite verb to rewrite in {len(failed)} of {len(texts)} "
                            f"example(s) (first: example {failed[0]}); mark only the examples where "
                            f"trigger.applicable(batch) is True.")
        return _map_text(x, lambda text: _restyle(text, self.tense), "StyleTrigger.apply")

    def independent(self, rng: np.random.Generator) -> StyleTrigger:
        """Another tense, drawn uniformly from the others (the Independent-T control: same kind of trigger)."""
        others = [tense for tense in TENSES if tense != self.tense]
        return StyleTrigger(others[int(rng.integers(len(others)))])

    def params(self) -> dict[str, Any]:
        return {"tense": self.tense}

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        _check_text_shape(shape, "StyleTrigger")
