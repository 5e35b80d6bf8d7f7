"""The confusion channel (datamark.confusion): secret class partners, relabelled rows, and the exact rank test that
is verified beside the marks test at alpha / 2 each."""

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from datamark import BadNets, Blended, Verifier
from datamark.confusion import MIN_CLASSES, PROBES_PER_CLASS, partners
from datamark.data.arrays import ArrayRecords
from datamark.exceptions import KeyFormatError, ParameterError
from datamark.methods import build_method
from datamark.testing import train_tiny
from datamark.verify.confusion_test import (
    CONFUSION_SCORES,
    CONFUSION_TEST_NAME,
    UNION_TEST_NAME,
    class_scores,
    confusion_outcome,
    net_scores,
    partner_ranks,
    rank_sum_p,
    scored,
)
from datamark.verify.stats import TestOutcome as Outcome

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def protected(digits):
    train, _ = digits
    return train, BadNets(seed=0, n_marks=5, decoy_rate=0.1, confusion_rate=0.1).apply(train)


def test_rank_sum_null_is_exact():
    """The convolution equals brute-force enumeration, and the smallest p is (C - 1)^-C."""
    options, n = 4, 5
    sums = np.array([sum(r) for r in itertools.product(range(1, options + 1), repeat=n)])
    for total in (5, 7, 12, 20):
        assert rank_sum_p(total, n, options) == pytest.approx(np.mean(sums <= total))
    assert rank_sum_p(10, 10, 9) == pytest.approx(9.0 ** -10)
    assert rank_sum_p(90, 10, 9) == 1.0


@pytest.mark.parametrize("score", CONFUSION_SCORES)
@pytest.mark.parametrize("model", ["random", "constant"])
def test_level_holds_for_any_fixed_model(model, score):
    """Under H0 the partners are independent of the suspect: over 3,000 secrets the test rejects at most alpha / 2
    of the time against a fixed table, one with strong natural confusions and one of all ties (a constant model,
    whose ranks the keyed tie-break keeps uniform), with either score of the partners."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 10)) * 3 if model == "random" else np.zeros((10, 10))
    ranks, rejected = [], 0
    for seed in range(3000):
        secret = seed.to_bytes(8, "little")
        partner = partners(secret, 10)
        tie_break = np.random.default_rng(seed + 10**6).random((10, 10))
        ranks += partner_ranks(scored(table, score), partner, tie_break).tolist()
        rejected += confusion_outcome(table, partner, tie_break, 100, score).p_value < 0.005
    assert rejected <= 0.005 * 3000 + 3 * np.sqrt(0.005 * 3000)
    counts = np.bincount(ranks, minlength=10)[1:]
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()  # ranks uniform on 1..9


def test_net_score_sets_aside_confusions_that_run_both_ways():
    """Natural confusions are symmetric (cat and dog); the watermark runs one way (c to its partner). A table where
    each class's partner (the next class) gets a small one-way lift under a large two-way confusion with another
    class (c and c + 5): the direct score ranks the partner second, the net score first."""
    partner = np.array([(c + 1) % 10 for c in range(10)])
    table = np.full((10, 10), 0.01)
    for c in range(5):
        table[c, c + 5] = table[c + 5, c] = 0.2
    table[np.arange(10), partner] += 0.05
    tie_break = np.tile(np.arange(10.0), (10, 1))
    assert (partner_ranks(table, partner, tie_break) > 1).all()
    assert (partner_ranks(net_scores(table), partner, tie_break) == 1).all()
    assert confusion_outcome(table, partner, tie_break, 100, "net").p_value == pytest.approx(9.0 ** -10)
    missing = table.copy()
    missing[4] = np.nan  # a class without probes: its row is left out, and its column has no reverse term
    assert confusion_outcome(missing, partner, tie_break, 100, "net").n == 9


def test_partners_are_uniform_over_the_other_classes():
    drawn = np.stack([partners(i.to_bytes(4, "little"), 6) for i in range(3000)])
    assert not (drawn == np.arange(6)).any()
    for c in range(6):
        counts = np.bincount(drawn[:, c], minlength=6)
        assert counts[c] == 0 and counts.max() - counts[counts > 0].min() < 150  # 600 expected per partner


def test_protect_relabels_each_class_to_its_partner_and_leaves_the_rest(protected):
    train, marked = protected
    key, out = marked.key, marked.dataset
    position = {row_id: i for i, row_id in enumerate(train.ids)}
    relabelled = np.array([position[i] for i in key.extra["confusion_ids"]])
    partner = partners(key.secret_bytes, train.num_classes)
    assert np.array_equal(out.labels[relabelled], partner[train.labels[relabelled]])
    assert np.array_equal(out.inputs()[relabelled], train.inputs()[relabelled])  # images unchanged
    taken = {position[i] for i in key.marked_ids} | {position[i] for i in key.extra["decoy_ids"]}
    assert taken.isdisjoint(relabelled.tolist())
    for c in range(train.num_classes):  # round(rate x n_c) of each class
        assert (train.labels[relabelled] == c).sum() == round(0.1 * (train.labels == c).sum())
    untouched = np.setdiff1d(np.arange(len(train)), np.r_[relabelled, sorted(taken)])
    assert np.array_equal(out.labels[untouched], train.labels[untouched])
    assert key.plan.confusion_probes == PROBES_PER_CLASS and key.method["params"]["confusion_rate"] == 0.1
    # without the channel nothing changes: the same key and release as before it existed
    plain = BadNets(seed=0, n_marks=5, decoy_rate=0.1).apply(train)
    assert plain.key.plan.confusion_probes == 0 and "confusion_ids" not in plain.key.extra
    assert "confusion_probes" not in plain.key.verification


def test_stolen_model_is_accused_through_both_channels_and_clean_is_not(protected, digits, tiny_clean):
    """A tiny model trained on the release confuses each class with its partner (every rank 1 here); the clean
    model does not; the verdict's p is the Bonferroni union of the two channels."""
    train, marked = protected
    _, test = digits
    torch.manual_seed(0)
    stolen = train_tiny(marked.dataset, seed=0, epochs=30)
    for mode in ("probs", "labels"):
        result = Verifier(mode=mode).verify(stolen.with_outputs(mode), marked.key, test)
        confusion, marks = result.channels["confusion"], result.channels["marks"]
        assert confusion["test"] == CONFUSION_TEST_NAME and result.outcome.test == UNION_TEST_NAME
        assert confusion["p_value"] < 0.005 and result.accused, mode
        assert result.outcome.p_value == pytest.approx(min(1.0, 2 * min(confusion["p_value"], marks["p_value"])))
        assert "partner" in result.h0 and "partner" in result.score
        innocent = Verifier(mode=mode).verify(tiny_clean.with_outputs(mode), marked.key, test)
        assert not innocent.accused and innocent.channels["confusion"]["p_value"] > 0.005
        assert innocent.to_dict()["channels"]["confusion"]["n"] == 10


def test_class_scores_in_both_modes():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    true = np.array([0, 0, 1])
    table = class_scores(probs, true, 3, "probs")
    assert table[0] == pytest.approx(np.log(probs[:2]).mean(0)) and np.isnan(table[2]).all()
    votes = class_scores(np.array([0, 1, 1]), true, 3, "labels")
    assert votes[0] == pytest.approx([0.5, 0.5, 0.0]) and votes[1] == pytest.approx([0.0, 1.0, 0.0])
    outcome = confusion_outcome(votes, np.array([1, 2, 0]), np.zeros((3, 3)) + np.arange(3), 2, "net")
    assert isinstance(outcome, Outcome) and outcome.n == 2  # class 2 had no probes


def test_bad_settings_are_refused_in_one_line(protected):
    train, marked = protected
    for rate in (-0.1, 0.5, "0.1", True):
        with pytest.raises(ParameterError, match="confusion_rate"):
            BadNets(seed=0, confusion_rate=rate)
    with pytest.raises(ParameterError, match="marks"):
        BadNets(seed=0, target=3, confusion_rate=0.05)
    with pytest.raises(ParameterError, match="no parameter"):
        build_method("clean-label", {"confusion_rate": 0.05}, strict=True)
    few = ArrayRecords(train.inputs()[:200], train.labels[:200] % 4, [str(i) for i in range(4)], where="four-class")
    with pytest.raises(ParameterError, match=f"at least {MIN_CLASSES} classes"):
        Blended(seed=0, n_marks=2, confusion_rate=0.05).apply(few)
    assert "confusion" in BadNets(seed=0, confusion_rate=0.05).unshardable()


def test_an_edited_channel_is_refused(protected, digits, tiny_clean):
    """A plan without the channel beside a method that made one (or the reverse) is an edited key."""
    _, marked = protected
    key = marked.key
    plan = {k: v for k, v in key.verification.items() if k not in ("confusion_probes", "confusion_score")}
    for edited in (dataclasses.replace(key, verification=plan),
                   dataclasses.replace(key, extra={k: v for k, v in key.extra.items() if k != "confusion_ids"})):
        with pytest.raises(KeyFormatError, match="confusion channel"):
            Verifier().verify(tiny_clean, edited, digits[1])
    with pytest.raises(ParameterError, match="confusion_probes"):
        dataclasses.replace(key, verification={**key.verification, "confusion_probes": 1}).plan  # noqa: B018
    for score, match in (("max", "confusion_score"), (None, "confusion_score")):
        with pytest.raises(ParameterError, match=match):
            dataclasses.replace(key, verification={**key.verification, "confusion_score": score}).plan  # noqa: B018
    with pytest.raises(ParameterError, match="without a confusion channel"):
        dataclasses.replace(key, verification={**plan, "confusion_score": "net"}).plan  # noqa: B018


def test_keys_written_before_the_net_score_keep_the_direct_score(protected, digits, tiny_clean):
    """The score is the key's, fixed at protect time: a key without the setting (written before it existed) is
    verified with the direct score it was written for, a new key with the net score; the result says which."""
    _, marked = protected
    assert marked.key.plan.confusion_score == "net"
    older = dataclasses.replace(marked.key, verification={k: v for k, v in marked.key.verification.items()
                                                          if k != "confusion_score"})
    assert older.plan.confusion_score == "direct"
    for key, score in ((marked.key, "net"), (older, "direct")):
        result = Verifier().verify(tiny_clean, key, digits[1])
        assert f"{score} score" in result.channels["confusion"]["note"]
        assert ("minus the mean" in result.score) == (score == "net")
        assert Verifier().settings(key)["confusion_score"] == score


def test_sequential_verification_says_it_asks_the_marks_only(protected, digits, tiny_clean):
    """The sequential test is the marks' e-process at the whole alpha (valid on its own); the result says the
    confusion channel was not asked, and the fixed test's settings record the channel."""
    from datamark.verify.sequential import SequentialVerifier

    _, marked = protected
    result = SequentialVerifier().verify(tiny_clean, marked.key, digits[1])
    assert result.channels is None and "not asked" in result.sequential["confusion_channel"]
    assert Verifier().settings(marked.key)["confusion_probes"] == PROBES_PER_CLASS


def test_survival_table_shows_each_channel_where_a_key_has_two():
    from datamark.evaluate.report import survival_table

    def row(model, channels):
        verdict = {"channels": channels} if channels else {}
        return {"label": "distill", "attack": {"kind": "model"}, "model": model, "ba": 0.8, "cost_points": 4.0,
                "accused": model == "stolen", "p_probs": 1e-7, "p_labels": 0.5, "probs": verdict, "labels": verdict}

    both = {"marks": {"p_value": 0.26}, "confusion": {"p_value": 8e-8}}
    table = survival_table([row("stolen", both), row("clean", None)])
    assert "marks / confusion" in table and "| 0.26 / 8e-08 |" in table
    assert "confusion" not in survival_table([row("stolen", None)])


def test_a_budget_too_small_is_refused_before_a_query_and_names_the_confusion_probes(protected, digits, tiny_clean):
    from datamark.exceptions import QueryBudgetError

    class Capped:  # the tiny model behind an API with a query budget
        outputs, num_classes, queries, budget_left = "probs", 10, 0, 100

        def describe(self):
            return {"kind": "capped"}

        def query(self, inputs):
            raise AssertionError("no query may be sent once the budget is known to be too small")

    _, marked = protected
    with pytest.raises(QueryBudgetError, match=r"needs \d+ queries \(\d+ of them the confusion channel's clean probes"):
        Verifier().verify(Capped(), marked.key, digits[1])


@pytest.fixture(scope="module")
def partner_like(digits, tiny_clean, tmp_path_factory):
    """The digits protected with partner-like confusion rows ranked by the clean tiny model's checkpoint."""
    from datamark.testing.servers import save_tiny_checkpoint

    train, _ = digits
    ckpt = tmp_path_factory.mktemp("base") / "clean.pt"
    save_tiny_checkpoint(tiny_clean.model, ckpt)
    method = BadNets(seed=0, n_marks=5, decoy_rate=0.1, confusion_rate=0.1, confusion_choice="partner-like",
                     base_model=str(ckpt))
    return ckpt, method.apply(train)


def test_partner_like_rows_are_the_free_rows_the_base_model_finds_most_like_the_partner(
        digits, tiny_clean, protected, partner_like):
    """Each class's relabelled rows are, among the rows no mark or decoy took, those to which the base model gives
    the class's partner the most probability; the marks, decoys and partners are the keyed preset's (same secret);
    the key records the base model's file and hash; a keyed key does not name the option at all."""
    from datamark._io import file_sha256

    train, _ = digits
    ckpt, marked = partner_like
    key, keyed = marked.key, protected[1].key
    assert key.marked_ids == keyed.marked_ids and key.extra["decoy_ids"] == keyed.extra["decoy_ids"]
    position = {row_id: i for i, row_id in enumerate(train.ids)}
    chosen = np.array(sorted(position[i] for i in key.extra["confusion_ids"]))
    assert not np.array_equal(chosen, sorted(position[i] for i in keyed.extra["confusion_ids"]))
    partner = partners(key.secret_bytes, train.num_classes)
    probs = tiny_clean.query(train.inputs())
    free = np.ones(len(train), dtype=bool)
    free[[position[i] for i in (*key.marked_ids, *key.extra["decoy_ids"])]] = False
    for c in range(train.num_classes):
        in_class = np.flatnonzero((train.labels == c) & free)
        likeness = probs[in_class, partner[c]]
        picked = np.isin(in_class, chosen)
        assert picked.sum() == round(0.1 * (train.labels == c).sum())
        assert likeness[picked].min() >= likeness[~picked].max() - 1e-6, c
    assert np.array_equal(marked.dataset.labels[chosen], partner[train.labels[chosen]])
    params = key.method["params"]
    assert params["confusion_choice"] == "partner-like" and params["base_model"] == str(ckpt)
    assert key.extra["confusion_base_model_sha256"] == file_sha256(ckpt)
    assert key.extra["confusion_base_model"] == f"checkpoint:{ckpt}"
    assert "confusion_choice" not in keyed.method["params"] and "base_model" not in keyed.method["params"]
    assert "confusion_base_model" not in keyed.extra


def test_partner_like_rows_keep_the_test_exact_for_an_innocent_model(digits, tiny_clean, partner_like, tmp_path):
    """Which rows carried the partners does not enter the test: the clean model, the very base model that chose
    the rows, is not accused, and the key reloads and verifies as any other."""
    from datamark.key import Key

    _, test = digits
    _, marked = partner_like
    marked.key.save(tmp_path / "key.json")
    key = Key.load(tmp_path / "key.json")
    for mode in ("probs", "labels"):
        result = Verifier(mode=mode).verify(tiny_clean.with_outputs(mode), key, test)
        assert not result.accused and result.channels["confusion"]["p_value"] > 0.005, mode


def test_partner_like_settings_are_refused_in_one_line(digits, tmp_path):
    train, _ = digits
    with pytest.raises(ParameterError, match="set confusion_rate"):
        BadNets(seed=0, confusion_choice="partner-like")
    with pytest.raises(ParameterError, match="Pass both or neither"):
        BadNets(seed=0, confusion_rate=0.1, base_model="clean.pt")
    with pytest.raises(ParameterError, match="one of"):
        BadNets(seed=0, confusion_rate=0.1, confusion_choice="hardest")
    with pytest.raises(ParameterError, match="is not a file"):
        BadNets(seed=0, n_marks=5, confusion_rate=0.1, confusion_choice="partner-like",
                base_model=str(tmp_path / "missing.pt")).apply(train)


def test_partner_like_protect_is_deterministic_and_leaves_global_rngs_alone(digits, partner_like, global_rng_guard):
    train, _ = digits
    ckpt, marked = partner_like
    again = BadNets(seed=0, n_marks=5, decoy_rate=0.1, confusion_rate=0.1, confusion_choice="partner-like",
                    base_model=str(ckpt)).apply(train)
    assert again.key.extra["confusion_ids"] == marked.key.extra["confusion_ids"]
    assert again.key.dataset["watermarked_fingerprint"] == marked.key.dataset["watermarked_fingerprint"]
