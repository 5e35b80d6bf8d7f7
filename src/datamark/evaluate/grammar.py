"""GErr: how many grammar errors a text watermark adds, counted offline with Harper.

Tang et al. (2023, "Did You Train on My Dataset? Towards Public Dataset Protection with Clean-Label Backdoor
Watermarking") report the stealthiness of their text watermarks as GErr, the increase in grammatical errors of
the watermarked samples over the originals (after Qi et al. 2021, "Hidden Killer"), counted by a grammar
checker. datamark counts with Harper (``harper-py``: a Rust grammar checker, offline, about a millisecond a
sentence) instead of LanguageTool (which needs Java or a server), so numbers are comparable across datamark runs
but not digit for digit with the papers.

The data are Penn-Treebank tokenised (``it 's``, ``do n't``, `` `` Conan '' ``, ``-LRB-``), which any checker
flags as errors that are not the watermark's. :func:`detokenize` therefore turns each text back into ordinary
prose first, with NLTK's Treebank detokeniser (joins clitics and punctuation, maps `` `` ``/``''`` to ``"`` and
``-LRB-``/``-RRB-`` to parentheses) after unescaping ``\\/`` and ``\\*`` and mapping ``--`` to an em dash. Errors that
are in the original (names Harper does not know, sentence fragments without a capital) count on both sides and
cancel in the difference.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..exceptions import ParameterError

INSTALL_HINT = 'GErr needs harper-py and NLTK: pip install "datamark[text]".'
#: Lint kinds that are not grammar errors and are ignored by default: Harper's "Readability" flags long
#: sentences, so one inserted word could turn a 40-word sentence into an "error".
DEFAULT_IGNORE = ("Readability",)
_PTB_ESCAPES = {"\\/": "/", "\\*": "*"}
_LOCK = threading.Lock()  # a Harper Linter is not thread-safe; one per process, calls serialised


@lru_cache(maxsize=1)
def _linter() -> Any:
    try:
        import harper
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return harper.Linter(harper.Dialect.AMERICAN)  # building the dictionary takes about a second: once


@lru_cache(maxsize=1)
def _detokenizer() -> Any:
    try:
        from nltk.tokenize.treebank import TreebankWordDetokenizer
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return TreebankWordDetokenizer()


def _texts(texts: Any, what: str) -> list[str]:
    if isinstance(texts, str) or (isinstance(texts, np.ndarray) and texts.ndim != 1):
        raise ParameterError(f"{what} must be a 1-d sequence of strings; wrap a single text in a list.")
    out = [str(t) if isinstance(t, np.str_) else t for t in texts]
    if not all(isinstance(t, str) for t in out):
        raise ParameterError(f"{what} must hold only strings (the text column of the dataset).")
    return out


def detokenize(text: str) -> str:
    """Penn-Treebank tokens back to prose: ``'it does n't -LRB- really -RRB- .'`` -> ``"it doesn't (really)."``."""
    tokens = []
    for token in text.split():
        for escaped, plain in _PTB_ESCAPES.items():
            token = token.replace(escaped, plain)
        tokens.append("\u2014" if token == "--" else token)
    return _detokenizer().detokenize(tokens, convert_parentheses=True)


def grammar_errors(texts: Sequence[str] | np.ndarray, *, detokenized: bool = False,
                   ignore_kinds: Collection[str] = DEFAULT_IGNORE) -> np.ndarray:
    """Harper's lint count per text (an int64 array), after :func:`detokenize` unless ``detokenized``.

    Args:
        texts: Whitespace-tokenised texts (PTB tokens as in SST-2 and AG News).
        detokenized: The texts are already ordinary prose: lint them as they are.
        ignore_kinds: Harper lint kinds not counted (``Lint.lint_kind``: "Spelling", "Agreement", ...).
    """
    texts = _texts(texts, "The texts given to grammar_errors")
    ignore = frozenset(ignore_kinds)
    linter = _linter()
    out = np.zeros(len(texts), dtype=np.int64)
    with _LOCK:
        for i, text in enumerate(texts):
            prose = text if detokenized else detokenize(text)
            out[i] = sum(lint.lint_kind not in ignore for lint in linter.lint(prose, language="plaintext"))
    return out


def gerr(original: Sequence[str] | np.ndarray, marked: Sequence[str] | np.ndarray, *,
         ignore_kinds: Collection[str] = DEFAULT_IGNORE) -> dict[str, float]:
    """The grammar errors a watermark adds to ``marked`` over the paired ``original`` texts.

    ``gerr_percent`` is the increase of the grammatical error *rate*, in errors per 100 original tokens::

        gerr_percent = 100 * (sum(errors_after) - sum(errors_before)) / sum(tokens_before)

    (tokens: whitespace tokens of the originals), the quantity Tang et al. report as GErr (< 0.5 % for their
    text watermarks); negative when the edits remove errors. Also returned: ``errors_before``/``errors_after``
    (mean errors per sentence), ``relative_increase`` ((after - before) / before over all sentences; 0 when
    both are 0, ``inf`` when only before is 0), ``fraction_more_errors`` (sentences with more errors than
    their original) and ``n``.
    """
    original = _texts(original, "The 'original' texts of gerr")
    marked = _texts(marked, "The 'marked' texts of gerr")
    if len(original) != len(marked):
        raise ParameterError(f"gerr pairs original[i] with marked[i], so both need the same length; got "
                             f"{len(original)} and {len(marked)} texts.")
    if not original:
        return {"n": 0, "errors_before": 0.0, "errors_after": 0.0, "gerr_percent": 0.0, "relative_increase": 0.0,
                "fraction_more_errors": 0.0}
    before = grammar_errors(original, ignore_kinds=ignore_kinds)
    after = grammar_errors(marked, ignore_kinds=ignore_kinds)
    added, tokens = int(after.sum() - before.sum()), sum(len(t.split()) for t in original)
    relative = added / before.sum() if before.sum() else (0.0 if added == 0 else float("inf"))
    return {"n": len(original), "errors_before": float(before.mean()), "errors_after": float(after.mean()),
            "gerr_percent": 100.0 * added / max(tokens, 1), "relative_increase": float(relative),
            "fraction_more_errors": float((after > before).mean())}
