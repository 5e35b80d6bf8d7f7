"""WordNet synonyms and lemminflect inflection for word-level text edits, offline.

WordNet 3.0 is read straight from its database files in the shared NLTK data (``index.<pos>`` for a lemma's
senses, ``data.<pos>`` for a synset's words and pointers; about half a second for all four parts of speech)
rather than through NLTK's ``WordNetCorpusReader``, which spends several seconds building indexes a synonym
look-up does not use. Inflection (``movie`` -> ``movies`` for NNS, ``enjoy`` -> ``enjoyed`` for VBD) uses
lemminflect's dictionary only, so rare words and invented forms are refused rather than guessed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .. import _nltk

_UPOS = {"noun": "NOUN", "verb": "VERB", "adj": "ADJ", "adv": "ADV"}
#: Penn Treebank tags whose word form differs from the lemma.
INFLECTED = frozenset({"NNS", "VBD", "VBG", "VBN", "VBP", "VBZ", "JJR", "JJS", "RBR", "RBS"})


@lru_cache(maxsize=1)
def _wordnet() -> dict[str, tuple[dict[str, list[bytes]], bytes]]:
    """Per WordNet POS: lemma -> offsets of its attested senses, and the raw ``data.<pos>`` file.

    Senses come most frequent first; only those with a SemCor count (the first ``tagsense_cnt``, at least one)
    are kept: rare senses ("pace" as a unit of length -> "yard") are where WordNet synonyms stop being synonyms.
    """
    db = {}
    for pos in ("noun", "verb", "adj", "adv"):
        index: dict[str, list[bytes]] = {}
        with _nltk.wordnet_file(f"index.{pos}") as stream:
            for line in stream.read().split(b"\n"):
                if line and not line.startswith(b" "):  # lemma pos synset_cnt p_cnt [ptr...] sense_cnt tag_cnt offs
                    fields, n = line.split(), int(line.split(maxsplit=3)[2])
                    index[fields[0].decode("utf-8")] = fields[-n:][:max(1, int(fields[-n - 1]))]
        with _nltk.wordnet_file(f"data.{pos}") as stream:
            db[pos] = (index, stream.read())
    return db


def _synset(pos: str, offset: int) -> tuple[list[str], list[int]]:
    """The words of the synset at byte ``offset`` of ``data.<pos>`` and its similar-to ('&') pointers."""
    data = _wordnet()[pos][1]
    fields = data[offset:data.index(b"\n", offset)].split(b" | ", 1)[0].split()
    n_words = int(fields[3], 16)  # offset lex_filenum ss_type w_cnt (word lex_id){w_cnt} p_cnt (ptr){p_cnt} ...
    words = [w.split(b"(", 1)[0].decode("utf-8") for w in fields[4:4 + 2 * n_words:2]]
    at = 4 + 2 * n_words
    ptrs = fields[at + 1:at + 1 + 4 * int(fields[at])]
    return words, [int(ptrs[k + 1]) for k in range(0, len(ptrs), 4) if ptrs[k] == b"&"]


@lru_cache(maxsize=65536)
def synonyms(lemma: str, pos: str, similar: bool = False) -> tuple[str, ...]:
    """Single-word lower-case WordNet synonyms of ``lemma`` (``pos`` in noun/verb/adj/adv), commonest sense first.

    With ``similar``, adjectives also bring the words of their similar-to synsets (WordNet's satellite links).
    """
    out: dict[str, None] = {}
    for raw in _wordnet()[pos][0].get(lemma, []):
        words, similar_to = _synset(pos, int(raw))
        for offset in similar_to if similar else []:
            words = words + _synset(pos, offset)[0]
        out.update((w, None) for w in words if w.isascii() and w.isalpha() and w.islower() and w != lemma)
    return tuple(out)


@lru_cache(maxsize=1)
def _lemminflect() -> Any:
    try:
        import lemminflect
    except ImportError as err:
        raise ImportError(_nltk.INSTALL_HINT) from err
    return lemminflect


def lemma_of(word: str, tag: str, pos: str) -> str | None:
    """The WordNet lemma of ``word`` tagged ``tag``: lemminflect's lemma for inflected tags, else the word itself."""
    index, lemmas = _wordnet()[pos][0], _lemminflect().getLemma(word, _UPOS[pos])
    guesses = [*lemmas, word] if tag in INFLECTED else [word, *lemmas]
    return next((g for g in guesses if g in index), None)


def inflect(lemma: str, tag: str) -> str | None:
    """``lemma`` in the form ``tag`` asks for, or None where lemminflect's dictionary does not know the word.

    Dictionary forms only (no rules for unknown words): that keeps out "outstandinger" and rare WordNet words.
    """
    li = _lemminflect()
    if tag not in INFLECTED:  # nouns and verbs must be known as such; participial adjectives are known as verbs
        known = li.getAllInflections(lemma)
        return lemma if (tag in known if tag in ("NN", "VB") else known or li.getAllLemmas(lemma)) else None
    forms = li.getInflection(lemma, tag, inflect_oov=False)
    return forms[0] if forms else None
