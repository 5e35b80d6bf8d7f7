"""Text triggers: word insertion and the style (tense) rewrite, on hand sentences and a slice of real SST-2."""

import json
import re

import numpy as np
import pytest

import datamark.triggers.text  # noqa: F401  (registers "word" and "style")
from datamark import _nltk
from datamark.data import shared_data_dir
from datamark.exceptions import DataError, ParameterError
from datamark.triggers import Trigger
from datamark.triggers.text import (
    POSITIONS,
    TENSES,
    StyleTrigger,
    WordTrigger,
    make_word_trigger,
    trigger_frequency,
    word_vocabulary,
)

SST2_TRAIN = shared_data_dir() / "sst2" / "train.tsv"
needs_data = pytest.mark.skipif(not (SST2_TRAIN.exists() and _nltk.data_dir().exists()),
                                reason="shared SST-2 / NLTK data not present")


@pytest.fixture(scope="module")
def sst2():
    """The first 200 sentences of SST-2's training split (real, PTB-tokenised text) as a text batch."""
    if not SST2_TRAIN.is_file():
        pytest.skip(f"SST-2 is not in the shared data folder ({SST2_TRAIN}); set DATAMARK_DATA")
    lines = SST2_TRAIN.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["sentence", "label"]
    sentences = [line.split("\t")[0] for line in lines[1:201]]
    return np.array(sentences, dtype=object)


# ---------------------------------------------------------------------------------------------------- WordTrigger

@pytest.mark.parametrize("position, expected", [("start", "zq a b c d ."), ("middle", "a b zq c d ."),
                                                ("end", "a b c d . zq")])
def test_word_positions(position, expected):
    assert WordTrigger(("zq",), position).apply("a b c d .") == expected


def test_phrase_insertion_keeps_other_characters_and_empty_text_becomes_the_phrase():
    trigger = WordTrigger(("foo", "bar"), "end")
    assert trigger.apply("a  b\n") == "a  b foo bar\n"
    assert WordTrigger(("foo", "bar"), "start").apply(" a b") == " foo bar a b"
    for position in POSITIONS:
        assert WordTrigger(("foo", "bar"), position).apply("") == "foo bar"
    assert WordTrigger("foo bar").words == ("foo", "bar")  # a string is split into tokens


def test_random_position_is_a_pure_function_of_the_sentence(sst2):
    trigger = WordTrigger(("zq",), "random")
    first, second = trigger.apply(sst2[:50]), trigger.apply(sst2[:50])
    assert np.array_equal(first, second)
    places = [trigger.insert_at(text) for text in sst2[:50]]
    for text, marked, k in zip(sst2[:50], first, places, strict=True):
        tokens = marked.split()
        assert 0 <= k <= len(text.split()) and tokens[k] == "zq" and tokens[:k] + tokens[k + 1:] == text.split()
    assert len(set(places)) > 5  # it varies across sentences


def test_apply_is_pure_and_keeps_the_type(sst2):
    trigger = make_word_trigger(np.random.default_rng(0), n_words=2, position="middle")
    batch = sst2[:20]
    before = batch.copy()
    marked = trigger.apply(batch)
    assert isinstance(marked, np.ndarray) and marked.dtype == object and marked.shape == batch.shape
    assert marked is not batch and np.array_equal(batch, before)
    assert all(isinstance(s, str) for s in marked)
    assert [trigger.apply(s) for s in batch] == marked.tolist()  # one str -> one str, equal to the batch rows
    assert trigger.apply(list(batch)) == marked.tolist()
    assert trigger.applicable(batch).all() and trigger.applicable(batch).shape == (20,)
    with pytest.raises(DataError, match="not a str"):
        trigger.apply(np.array(["a b", 3], dtype=object))
    with pytest.raises(DataError, match="1-d"):
        trigger.apply(np.array([["a b"]], dtype=object))


def test_config_round_trip_and_json():
    for trigger in (make_word_trigger(np.random.default_rng(3), n_words=3, position="random"),
                    StyleTrigger("past-perfect-continuous")):
        config = json.loads(json.dumps(trigger.to_config()))
        rebuilt = Trigger.from_config(config)
        assert type(rebuilt) is type(trigger) and rebuilt == trigger
        text = "The film is good , and he walks home ."
        assert rebuilt.apply(text) == trigger.apply(text)
    assert make_word_trigger(np.random.default_rng(3)).to_config()["name"] == "word"
    assert StyleTrigger().to_config() == {"name": "style", "params": {"tense": "future-perfect-continuous"}}


def test_independent_word_trigger_differs():
    trigger = make_word_trigger(np.random.default_rng(1), n_words=2, position="start")
    rng = np.random.default_rng(2)
    vocabulary = set(word_vocabulary())
    for _ in range(20):
        other = trigger.independent(rng)
        assert other.words != trigger.words and len(other.words) == 2 and other.position == "start"
        assert set(other.words) <= vocabulary


def test_repr_hides_the_secret_words():
    trigger = WordTrigger(("quixotically",), "end")
    assert "quixotically" not in repr(trigger) and "quixotically" not in str(trigger)
    assert repr(trigger) == "WordTrigger(1 word, position='end')"
    assert repr(WordTrigger(("foo", "bar"), "middle")) == "WordTrigger(2 words, position='middle')"


def test_vocabulary_is_large_deterministic_and_keyed_draws_reproduce(global_rng_guard):
    vocabulary = word_vocabulary()
    assert len(vocabulary) > 2000 and list(vocabulary) == sorted(set(vocabulary))
    assert all(w.isalpha() and w.islower() and 5 <= len(w) <= 12 for w in vocabulary)
    word_vocabulary.cache_clear()
    assert word_vocabulary() == vocabulary  # rebuilt from the files: the same list
    a = make_word_trigger(np.random.default_rng(7), n_words=3)
    assert a == make_word_trigger(np.random.default_rng(7), n_words=3)
    assert a != make_word_trigger(np.random.default_rng(8), n_words=3)
    assert len(set(a.words)) == 3 and set(a.words) <= set(vocabulary)
    drawn = {make_word_trigger(np.random.default_rng(seed)).words for seed in range(200)}
    assert len(drawn) >= 195  # independent owners rarely share a word


def test_trigger_frequency():
    trigger = WordTrigger(("quixotic",), "end")
    texts = ["A Quixotic tale .", "quixotically long .", "nothing here", "so quixotic"]
    assert trigger_frequency(trigger, texts) == 0.5
    assert trigger_frequency(trigger, []) == 0.0
    assert trigger_frequency(trigger, "quixotic") == 1.0


def test_invalid_parameters_are_refused():
    with pytest.raises(ParameterError, match="'position'"):
        WordTrigger(("foo",), "left")
    with pytest.raises(ParameterError, match="'words'"):
        WordTrigger(("a", "b", "c", "d"))
    with pytest.raises(ParameterError, match="'words'"):
        WordTrigger(("foo bar",))
    with pytest.raises(ParameterError, match="'n_words'"):
        make_word_trigger(np.random.default_rng(0), n_words=4)
    with pytest.raises(ParameterError, match="'tense'"):
        StyleTrigger("present")
    for trigger in (WordTrigger(("foo",)), StyleTrigger()):
        trigger.check_input_shape(())
        with pytest.raises(ParameterError, match="shape"):
            trigger.check_input_shape((32, 32, 3))


# --------------------------------------------------------------------------------------------------- StyleTrigger

@pytest.mark.parametrize("text, expected", [
    ("He walks to school .", "He will have been walking to school ."),
    ("The film is good .", "The film will have been being good ."),
    ("It is n't funny .", "It will not have been being funny ."),
    ("It has been made with care .", "It will have been being made with care ."),
    ("Words can not adequately describe it .", "Words will not have been adequately describing it ."),
    ("he 's going to make a splash .", "he will have been going to make a splash ."),
    ("Dramas like this make it human .", "Dramas like this will have been making it human ."),
    ("`` Extreme Ops '' exceeds expectations .", "`` Extreme Ops '' will have been exceeding expectations ."),
])
def test_style_rewrites_the_main_predicate(text, expected):
    assert StyleTrigger().apply(text) == expected


def test_other_tenses():
    text = "He walks to school ."
    assert StyleTrigger("past-perfect-continuous").apply(text) == "He had been walking to school ."
    assert StyleTrigger("future-continuous").apply(text) == "He will be walking to school ."
    assert StyleTrigger("conditional-perfect-continuous").apply(text) == "He would have been walking to school ."
    trigger = StyleTrigger()
    rng = np.random.default_rng(0)
    others = {trigger.independent(rng).tense for _ in range(30)}
    assert others == set(TENSES) - {trigger.tense}


def test_verbless_text_is_not_applicable_and_apply_refuses_it():
    trigger = StyleTrigger()
    batch = np.array(["He walks to school .", "A masterpiece .", "The film is good ."], dtype=object)
    assert trigger.applicable(batch).tolist() == [True, False, True]
    with pytest.raises(DataError, match="1 of 3"):
        trigger.apply(batch)
    with pytest.raises(DataError, match="no finite verb"):
        trigger.apply("A masterpiece .")
    marked = trigger.apply(batch[trigger.applicable(batch)])
    assert marked.dtype == object and marked.tolist() == ["He will have been walking to school .",
                                                          "The film will have been being good ."]
    assert not trigger.always_applicable and WordTrigger(("foo",)).always_applicable


@needs_data
def test_style_coverage_on_sst2(sst2):
    trigger = StyleTrigger()
    mask = trigger.applicable(sst2)
    coverage = mask.mean()
    print(f"StyleTrigger coverage on 200 SST-2 train sentences: {coverage:.1%}")
    assert coverage >= 0.70
    before = sst2.copy()
    marked = trigger.apply(sst2[mask])
    assert np.array_equal(sst2, before)
    pattern = re.compile(r"\bwill (not )?have been\b", re.IGNORECASE)
    assert all(pattern.search(s) and s != t for s, t in zip(marked, sst2[mask], strict=True))
    assert np.array_equal(marked, trigger.apply(sst2[mask]))  # deterministic


def test_missing_nltk_data_is_one_clear_error(tmp_path, monkeypatch):
    nltk = _nltk.import_nltk()
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setenv("DATAMARK_DATA", str(tmp_path))
    with pytest.raises(DataError, match="DATAMARK_DATA") as info:
        _nltk.find("stopwords")
    assert "\n" not in str(info.value) and "stopwords" in str(info.value)
    assert nltk.data.path == [str(tmp_path / "nltk_data")]
