"""Offline NLTK resources (WordNet, stop words, the averaged-perceptron POS tagger) from datamark's shared data.

datamark never downloads at run time: the NLTK data ships in ``<shared>/nltk_data`` (``shared_data_dir()``, which
honours ``$DATAMARK_DATA``) in NLTK's own layout (``corpora/wordnet.zip``, ``corpora/stopwords.zip``,
``taggers/averaged_perceptron_tagger_eng.zip``, ``taggers/universal_tagset.zip``). The first use puts that folder
at the front of ``nltk.data.path``; a missing resource is a one-line :class:`~datamark.exceptions.DataError` that
names it and the fix, instead of NLTK's banner asking for ``nltk.download`` (which cannot work offline).

NLTK is an optional dependency, imported on first use (``pip install "datamark[text]"``). Loaded resources are
cached per process: the tagger takes about half a second to load, WordNet several seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .exceptions import DataError, ParameterError

INSTALL_HINT = 'datamark\'s text support needs NLTK and lemminflect: pip install "datamark[text]".'

#: Short names -> NLTK resource paths (relative to an ``nltk_data`` folder; NLTK also looks inside ``<name>.zip``).
RESOURCES = {
    "wordnet": "corpora/wordnet/",
    "stopwords": "corpora/stopwords/",
    "tagger": "taggers/averaged_perceptron_tagger_eng/",
    "universal_tagset": "taggers/universal_tagset/",
}


def data_dir() -> Path:
    """The folder datamark reads NLTK data from: ``<shared data>/nltk_data``."""
    from .data import shared_data_dir

    return shared_data_dir() / "nltk_data"


def import_nltk() -> Any:
    """The ``nltk`` module with :func:`data_dir` at the front of its search path (added once per folder)."""
    try:
        import nltk
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    folder = str(data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)
    return nltk


def find(resource: str) -> Any:
    """NLTK's path pointer to ``resource`` (a key of :data:`RESOURCES` or an NLTK resource path).

    Raises:
        DataError: the resource is in none of NLTK's data folders.
    """
    nltk = import_nltk()
    path = RESOURCES.get(resource, resource)
    try:
        return nltk.data.find(path)
    except LookupError:
        # Not chained: NLTK's multi-line banner recommends nltk.download(), which is the wrong fix offline.
        raise DataError(f"The NLTK resource '{resource}' ({path}, or its .zip) is not in {data_dir()}; set "
                        f"DATAMARK_DATA to the shared data folder that holds nltk_data/.") from None


@lru_cache(maxsize=1)
def wordnet() -> Any:
    """NLTK's WordNet reader (``nltk.corpus.wordnet``), checked to be present; it loads lazily on first use."""
    find("wordnet")
    from nltk.corpus import wordnet as wn

    return wn


def wordnet_file(name: str) -> Any:
    """An open binary stream of one file of the WordNet database (``data.adj``, ``cntlist.rev``, ...).

    Reading the database files directly is ~10x faster than loading the full reader when only lemma lists are
    needed (the reader builds every index up front).
    """
    try:
        return find("wordnet").join(name).open()
    except (OSError, KeyError) as err:
        raise DataError(f"The WordNet file '{name}' is missing from {find('wordnet')}; replace the WordNet data "
                        f"in {data_dir()} with a complete copy (WordNet 3.0).") from err


@lru_cache(maxsize=8)
def stopwords(language: str = "english") -> frozenset[str]:
    """NLTK's stop-word list for ``language`` (lower case)."""
    try:
        with find("stopwords").join(language).open() as stream:
            return frozenset(stream.read().decode("utf-8").split())
    except (OSError, KeyError) as err:
        raise DataError(f"NLTK's stop words have no list for language '{language}'; use one of the file names in "
                        f"{find('stopwords')} (e.g. 'english').") from err


@lru_cache(maxsize=1)
def tagger() -> Any:
    """The averaged-perceptron POS tagger (Penn Treebank tags), loaded once per process.

    ``nltk.pos_tag`` itself reloads the 6 MB model on every call, which would dominate tagging time.
    """
    import_nltk()
    from nltk.tag.perceptron import PerceptronTagger

    model = PerceptronTagger(load=False)
    model.load_from_json(loc=find("tagger"))
    return model


def pos_tag(tokens: Sequence[str], tagset: str | None = None) -> list[tuple[str, str]]:
    """Tag already-tokenised text: ``[(token, tag), ...]`` with Penn Treebank tags, or ``tagset="universal"``."""
    tagged = tagger().tag(list(tokens))
    if tagset is None:
        return tagged
    if tagset != "universal":
        raise ParameterError(f"The 'tagset' of pos_tag must be None (Penn Treebank) or 'universal'; got '{tagset}'.")
    find("universal_tagset")
    from nltk.tag.mapping import map_tag

    return [(token, map_tag("en-ptb", "universal", tag)) for token, tag in tagged]


def pos_tag_sents(sentences: Sequence[Sequence[str]], tagset: str | None = None) -> list[list[tuple[str, str]]]:
    """:func:`pos_tag` for each of ``sentences``."""
    return [pos_tag(tokens, tagset) for tokens in sentences]
