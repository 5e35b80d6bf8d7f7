"""Text watermarks end to end on real data (AG News, SST-2 slices) with the fast bag-of-embeddings model:
protect -> train -> verify (fixed-n and sequential, local and over HTTP), and the three scenarios."""

import json

import numpy as np
import pytest

from datamark import BadNets, CleanLabel, Verifier, load_data
from datamark.models import default_config, fit, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.testing import check_three_scenarios
from datamark.verify import SequentialVerifier

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL_CNN = {"embed_dim": 32, "num_filters": 32}


def _sample(name, n, seed):
    data = load_data(name)
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:n]))


@pytest.fixture(scope="module")
def ag_news(one_thread):
    """AG News slices, a 5-mark BadNets key (4 classes: p0 = 1/4), and small TextCNNs on the marked and clean
    data (max-pooling finds a single trigger word; a mean of embeddings dilutes it in long texts)."""
    train, test = _sample("ag_news:train", 1600, 0), _sample("ag_news:test", 400, 1)
    marked = BadNets(seed=3, n_marks=5, rate=0.25).apply(train)
    config = default_config("textcnn", epochs=8, seed=0)
    model, spec = fit(marked.dataset, arch="textcnn", config=config, **SMALL_CNN)
    stolen = LocalSuspect.from_model(model, spec)
    stolen.spec = spec  # for the HTTP test's checkpoint
    clean = LocalSuspect.from_model(*fit(train, arch="textcnn", config=config, **SMALL_CNN))
    return train, test, marked, stolen, clean


def test_word_marks_convict_the_thief_and_spare_the_innocent(ag_news):
    train, test, marked, stolen, clean = ag_news
    key = marked.key
    assert key.dataset["modality"] == "text" and key.trigger["name"] == "word" and len(key.mark_list()) == 5
    assert len({" ".join(m.trigger.words) for m in key.mark_list()}) == 5  # one secret word per mark
    check_three_scenarios(key, stolen, clean, test)
    sequential = SequentialVerifier()  # one probe per mark: anytime-valid, cheap, and never accuses the clean model
    assert sequential.verify(stolen, key, test).outcome.p_value < sequential.verify(clean, key, test).outcome.p_value
    assert not sequential.verify(clean, key, test).accused


def test_text_suspect_over_http_answers_like_the_local_model(ag_news, tmp_path):
    pytest.importorskip("fastapi")
    from datamark.suspects import HTTPSuspect
    from datamark.suspects.serve import BackgroundServer, app_from_checkpoint

    _, test, marked, stolen, _ = ag_news
    save_checkpoint(stolen.model, stolen.spec, tmp_path / "m.pt")
    with BackgroundServer(app_from_checkpoint(tmp_path / "m.pt", model_name="news")) as server:
        with HTTPSuspect(server.url, "news", datatype="BYTES") as remote:
            texts = test.inputs()[:20]
            assert np.allclose(remote.query(texts), stolen.query(texts), atol=1e-5)
            assert Verifier().verify(remote, marked.key, test).accused


def test_cli_protects_trains_and_verifies_a_tsv(tmp_path):
    from typer.testing import CliRunner

    from datamark.cli import app

    data = _sample("ag_news:train", 1200, 2)
    rows = [["label", "text"]] + [[str(int(y)), str(x)] for x, y in zip(data.inputs(), data.labels, strict=True)]
    source = tmp_path / "news.csv"
    import csv
    with open(source, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    runner = CliRunner()
    out = runner.invoke(app, ["protect", str(source), "-o", str(tmp_path / "wm.csv"), "-k", str(tmp_path / "k.json"),
                              "--n-marks", "4", "--rate", "0.25", "--seed", "5"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "wm.csv").read_text(encoding="utf-8").splitlines()[0] == "label,text"
    out = runner.invoke(app, ["train", str(tmp_path / "wm.csv"), "-o", str(tmp_path / "m.pt"), "--arch", "bag",
                              "--epochs", "2"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["verify", "-k", str(tmp_path / "k.json"), "-m", str(tmp_path / "m.pt"), "-d",
                              "ag_news:test", "--json", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["marks"]["n_marks"] == 4 and "p_value" in result["outcome"], out.output
    bad = runner.invoke(app, ["protect", str(source), "-o", str(tmp_path / "x.csv"), "-k", str(tmp_path / "x.json"),
                              "--eps", "0.1"])
    assert bad.exit_code != 0 and "no parameter" in bad.output


def test_clean_label_text_keeps_labels_and_meaning(tmp_path):
    train = _sample("sst2:train", 400, 3)
    base, spec = fit(train, arch="bag", config=default_config("bag", epochs=4, seed=0))
    save_checkpoint(base, spec, tmp_path / "base.pt")
    marked = CleanLabel(seed=0, target=1, class_rate=0.05, n_marks=1, max_changes=3,
                        base_model=str(tmp_path / "base.pt")).apply(train)
    rows = marked.rows
    assert (marked.dataset.labels == train.labels).all() and (train.labels[rows] == 1).all()
    word = " ".join(marked.key.mark_list()[0].trigger.words)
    assert all(word in t.split() or word in t for t in marked.dataset.take(rows))
    summary = marked.key.extra["synonyms"]
    assert summary["fraction_changed"] > 0 and summary["mean_similarity_changed"] >= 0.85
    untouched = np.setdiff1d(np.arange(len(train)), rows)
    assert list(marked.dataset.take(untouched)) == list(train.take(untouched))


def test_text_bad_input_is_refused_or_warned(ag_news):
    from datamark.exceptions import SuspectError, WeakTriggerWarning
    from datamark.triggers.text import WordTrigger

    train, test, _, stolen, _ = ag_news
    with pytest.warns(WeakTriggerWarning, match="already occurs"):
        BadNets(seed=0, trigger=WordTrigger(("the",)), rate=0.1).apply(train)
    with pytest.raises(SuspectError, match="vocabulary does not match"):
        stolen.query(np.array(["Всё смешалось в доме Облонских ."] * 3, dtype=object))
    with pytest.raises(SuspectError, match="text"):
        stolen.query(np.zeros((2, 8, 8, 1), dtype=np.uint8))


def test_text_verification_leaves_evidence_that_replays_to_the_same_verdict(ag_news, tmp_path):
    from datamark.verify.evidence import check_evidence, reverify, verify_with_evidence

    _, test, marked, stolen, _ = ag_news
    result = verify_with_evidence(Verifier(), stolen, marked.key, test, tmp_path / "run.jsonl", batch_size=64)
    report = check_evidence(tmp_path / "run.jsonl")
    assert report.finished and report.result["accused"] == result.accused and report.queries == result.queries
    words = [w for m in marked.key.mark_list() for w in m.trigger.words]
    text = (tmp_path / "run.jsonl").read_text()
    assert marked.key.secret not in text and not any(f" {w} " in text for w in words)  # hashes, never the probes
    assert reverify(tmp_path / "run.jsonl", marked.key, test).outcome.p_value == result.outcome.p_value
