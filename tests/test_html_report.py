"""The HTML report: verdict first, figures inline, the secret never on the page; rendered in a real browser."""

import base64
import json
import re
import shutil

import numpy as np
import pytest

from datamark import BadNets
from datamark.evaluate.experiment import ExperimentReport, MethodReport
from datamark.evaluate.html_report import load_results, replay_evidence, write_html_report
from datamark.evaluate.scenarios import ScenarioRow
from datamark.exceptions import EvidenceError, KeyMismatchError, OutputExistsError, ParameterError, ResultsFormatError
from datamark.testing import ReactingSuspect
from datamark.verify import Verifier, verify_with_evidence
from datamark.verify.sequential import SequentialVerifier

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


class MarksSuspect:
    """A model that learned every mark of a multi-mark key: a probe carrying mark j's trigger goes to mark j's
    target, any other input to its true label (found by exact match; unknown inputs to class 0)."""

    def __init__(self, key, data):
        self.answer = {x.tobytes(): int(y) for x, y in zip(data.inputs(), data.labels, strict=True)}
        for mark in key.mark_list():
            for x in mark.trigger.apply(data.inputs()):
                self.answer[x.tobytes()] = mark.target
        self.outputs, self.num_classes, self.queries = "probs", data.num_classes, 0

    def query(self, inputs):
        self.queries += len(inputs)
        probs = np.full((len(inputs), self.num_classes), 0.1 / (self.num_classes - 1))
        probs[np.arange(len(inputs)), [self.answer.get(x.tobytes(), 0) for x in inputs]] = 0.9
        return probs


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """Recorded verifications on the embedded digits without training: a single-mark key against a model that
    learned its trigger (accused) and one that ignores it (not accused); a multi-mark key, sequentially."""
    train, test = digits
    test = test.subset(range(200))
    folder = tmp_path_factory.mktemp("runs")
    key = BadNets(seed=0, target=5).apply(train).key
    learned = ReactingSuspect(test, lambda label: 5, responds_to=key.mark_list()[0].trigger.apply(test.inputs()))
    ignores = ReactingSuspect(test, lambda label: 5, responds_to=[])
    accused = verify_with_evidence(Verifier(), learned, key, test, folder / "accused.jsonl")
    accused.save(folder / "accused.json")
    cleared = Verifier().verify(ignores, key, test)
    cleared.save(folder / "cleared.json")
    marks_key = BadNets(seed=1, n_marks=5).apply(train).key
    sequential = verify_with_evidence(SequentialVerifier(), MarksSuspect(marks_key, test), marks_key, test,
                                      folder / "marks.jsonl")
    sequential.save(folder / "marks.json")
    rows = [ScenarioRow("Independent-T", 0.97, 0.01, cleared, cleared), ScenarioRow("Independent-M", 0.98, 0.01,
                                                                                  cleared, cleared),
            ScenarioRow("Steal", 0.97, 0.9, accused, accused)]
    report = ExperimentReport(0.98, 1.0, {"badnets": MethodReport("badnets", rows, key.commitment, 5, 27, 0.1, 1.0,
                                                                  goal="target class 5")}, {"arch": "tiny"})
    (folder / "results.json").write_text(json.dumps(report.to_dict()))
    return {"key": key, "marks_key": marks_key, "data": test, "train": train, "dir": folder, "accused": accused,
            "cleared": cleared, "sequential": sequential}


def _text(path):
    return path.read_text(encoding="ascii")  # the page is ASCII (entities), whatever the locale


def _pngs(page):
    return [base64.b64decode(m) for m in PNG.findall(page)]


def test_accused_page_has_verdict_test_figures_and_evidence_but_no_secret(runs, tmp_path, global_rng_guard):
    d, key = runs["dir"], runs["key"]
    out = write_html_report(d / "accused.json", tmp_path / "r.html", key=key, data=runs["data"],
                            evidence=d / "accused.jsonl", released=(runs["train"], BadNets(seed=0, target=5).apply(
                                runs["train"]).dataset))
    page = _text(out)
    assert '<h1 id="verdict-text">Accused</h1>' in page
    assert page.index("verdict-text") < page.index("<h2>Figures</h2>") < page.index("<h2>Settings</h2>")
    for text in (runs["accused"].h0, "paired t-test", "one-sided, H1 greater", key.commitment,
                 "trigger-specificity control: p = 0.0099"):
        assert text.replace(">", "&gt;").replace("<", "&lt;") in page, text
    last_hash = (d / "accused.jsonl").read_text().strip().splitlines()[-1]
    assert json.loads(last_hash)["hash"] in page
    assert key.secret not in page and key.secret.upper() not in page
    # p against alpha, scores, control ranks, examples (clean/triggered, released): all replayed, nothing missing
    assert len(_pngs(page)) == 5 and all(p.startswith(b"\x89PNG") for p in _pngs(page))
    assert "per-probe scores (100 probes)" in page and "needs pass --evidence" not in page and "omitted" not in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_replayed_scores_are_the_ones_the_test_used(runs):
    replay = replay_evidence(runs["dir"] / "accused.jsonl", runs["key"], runs["data"], runs["accused"])
    outcome = runs["accused"].outcome
    assert len(replay.treated) == outcome.n == 100
    assert np.isclose((replay.treated - replay.control).mean(), outcome.effect)
    # the model learned only the key's trigger: it outranks all 100 random triggers (p = 1/101)
    assert len(replay.control_effects) == 100 and replay.key_effect > max(replay.control_effects)


def test_result_alone_says_what_is_missing(runs, tmp_path):
    page = _text(write_html_report(runs["dir"] / "cleared.json", tmp_path / "r.html"))
    assert '<h1 id="verdict-text">Not accused</h1>' in page and "H0 not rejected" in page
    assert "pass --evidence FILE" in page and "Examples omitted" in page
    assert "evidence hash</th><td>none" in page and len(_pngs(page)) == 2  # p against alpha, the control's rank


def test_sequential_marks_page_draws_the_e_value_path(runs, tmp_path):
    d, key = runs["dir"], runs["marks_key"]
    replay = replay_evidence(d / "marks.jsonl", key, runs["data"], runs["sequential"])
    assert runs["sequential"].accused and runs["sequential"].sequential["stopped"] == "evidence"
    assert replay.log10_e[-1] >= 2.0 > replay.log10_e[0]  # 1/alpha = 100 reached at the stop, not before
    page = _text(write_html_report(d / "marks.json", tmp_path / "r.html", key=key, data=runs["data"],
                                   evidence=d / "marks.jsonl"))
    assert "sequential e-value path (stopped: evidence)" in page and "marks hit" in page
    assert key.secret not in page and "secret (one per mark)" in page


def test_experiment_page_lists_every_scenario(runs, tmp_path):
    page = _text(write_html_report(runs["dir"] / "results.json", tmp_path / "r.html", key=runs["key"],
                                   data=runs["data"]))
    assert "Watermarks work as intended" in page and page.count("<td>Steal</td>") == 1
    assert "accused / accused" in page and len(_pngs(page)) == 2


def test_refuses_what_it_cannot_report(runs, tmp_path):
    d = runs["dir"]
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(ResultsFormatError, match=r"other\.json.*datamark verify --json"):
        load_results(tmp_path / "other.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ResultsFormatError, match=r"bad\.json.*cannot be read as JSON"):
        load_results(tmp_path / "bad.json")
    newer = json.loads((d / "cleared.json").read_text()) | {"schema": "datamark.verify-result/2"}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(ResultsFormatError, match=r"newer\.json.*schema 'datamark.verify-result/2'"):
        load_results(tmp_path / "newer.json")
    edited = json.loads((d / "cleared.json").read_text()) | {"accused": True}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    with pytest.raises(ResultsFormatError, match="edited"):
        load_results(tmp_path / "edited.json")
    with pytest.raises(KeyMismatchError, match="commitment"):
        write_html_report(d / "accused.json", tmp_path / "a.html", key=runs["marks_key"])
    with pytest.raises(EvidenceError, match="another run"):
        write_html_report(d / "accused.json", tmp_path / "a.html", evidence=d / "marks.jsonl")
    with pytest.raises(ParameterError, match="experiment"):
        write_html_report(d / "results.json", tmp_path / "a.html", evidence=d / "accused.jsonl")
    (tmp_path / "a.html").write_text("keep me")
    with pytest.raises(OutputExistsError):
        write_html_report(d / "cleared.json", tmp_path / "a.html")
    assert (tmp_path / "a.html").read_text() == "keep me"
    with pytest.raises(ParameterError, match="input"):
        write_html_report(d / "cleared.json", d / "cleared.json", overwrite=True)


@pytest.fixture
def browser():
    """(chromium's path, playwright.sync_api); skips, before the module's runs are built, where either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason='playwright missing (pip install "datamark[test]")')
    return chromium, sync_api


def test_pages_render_in_a_real_browser(browser, runs, tmp_path):
    chromium, sync_api = browser
    d = runs["dir"]
    pages = {"Accused": write_html_report(d / "accused.json", tmp_path / "accused.html", key=runs["key"],
                                          data=runs["data"], evidence=d / "accused.jsonl"),
             "Not accused": write_html_report(d / "cleared.json", tmp_path / "cleared.html"),
             "Watermarks work as intended": write_html_report(d / "results.json", tmp_path / "experiment.html")}
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for verdict, path in pages.items():
                page = launched.new_page()
                problems, requests = [], []
                page.on("console", lambda m, problems=problems: m.type == "error" and problems.append(m.text))
                page.on("pageerror", lambda e, problems=problems: problems.append(str(e)))
                page.on("request", lambda r, requests=requests: requests.append(r.url))
                page.goto(path.resolve().as_uri(), wait_until="load")
                assert problems == [], (path.name, problems)
                heading = page.locator("#verdict-text")
                assert heading.is_visible() and heading.inner_text().strip().lower() == verdict.lower()
                sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
                assert sizes and all(done and width > 0 for done, width in sizes), (path.name, sizes)
                assert all(u.startswith(("file:", "data:")) for u in requests), requests
                page.close()
        finally:
            launched.close()
