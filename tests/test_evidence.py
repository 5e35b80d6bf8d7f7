"""Evidence files: hash chain, tamper detection, offline re-verification, interrupted runs resumed exactly."""

import json
import re

import pytest
from typer.testing import CliRunner

from datamark import Verifier
from datamark.cli import app
from datamark.exceptions import EvidenceError, EvidenceWarning, OutputExistsError, SuspectError
from datamark.verify.evidence import check_evidence, describe_suspect, entry_hash, reverify, verify_with_evidence
from datamark.verify.sequential import SequentialVerifier


def _fixed(**settings):
    """A fixed-n verifier without the specificity control (its 100 control triggers cost queries, not coverage)."""
    return Verifier(n_control_triggers=0, **settings)


def _sequential(**settings):
    return SequentialVerifier(n_control_triggers=0, **settings)


class DiesAfter:
    """A suspect that answers ``calls`` queries, then fails like a server that went away (or like Ctrl-C)."""

    def __init__(self, inner, calls, error=SuspectError("the suspect went away")):
        self.inner, self.calls, self.error = inner, calls, error
        self.outputs, self.num_classes, self.queries = inner.outputs, inner.num_classes, 0

    def describe(self):
        return describe_suspect(self.inner)  # a wrapper in front of the same model: the same suspect

    def query(self, inputs):
        if self.calls == 0:
            raise self.error
        self.calls -= 1
        self.queries += len(inputs)
        return self.inner.query(inputs)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def _rehash(entry):
    """``entry`` with a valid hash again: what a forger who edits the last line does."""
    return {**entry, "hash": entry_hash({k: v for k, v in entry.items() if k != "hash"})}


def _check_cli(*args):
    res = CliRunner().invoke(app, ["evidence", *map(str, args)])
    res.text = " ".join(res.output.split())
    return res


@pytest.fixture
def recorded(tiny_pair, tmp_path):
    key, stolen, _, test = tiny_pair
    path = tmp_path / "run.jsonl"
    result = verify_with_evidence(_fixed(mode="probs"), stolen, key, test, path, batch_size=32)
    return path, result


def test_chain_records_every_batch_and_no_secret(recorded, tiny_pair):
    path, result = recorded
    key, stolen = tiny_pair[:2]
    report = check_evidence(path)
    assert [e["type"] for e in report.entries] == ["header"] + ["batch"] * 7 + ["result"]
    assert report.queries == result.queries == 200 and report.result["accused"] and report.finished
    header = report.header
    assert header["commitment"] == key.commitment and header["test"]["n_probe"] == 100
    assert header["suspect"] == describe_suspect(stolen) and len(header["suspect"]["weights_sha256"]) == 64
    text = path.read_text()
    assert key.secret not in text and json.dumps(key.trigger["params"])[:40] not in text


def test_tampering_is_detected(recorded, tiny_pair):
    path, _ = recorded
    entries = _lines(path)
    edited = json.loads(json.dumps(entries))
    edited[3]["response"][0][5] = 0.5  # change one answer
    _rewrite(path, edited)
    with pytest.raises(EvidenceError, match="line 4 .*edited"):
        check_evidence(path)
    _rewrite(path, entries[:2] + entries[3:])  # drop a batch
    with pytest.raises(EvidenceError, match="line 3: the chain is broken"):
        check_evidence(path)
    # A forger who flips the verdict and re-hashes the last line keeps the chain valid, but the answers
    # no longer imply the result: re-verification with the key catches it.
    forged = json.loads(json.dumps(entries))
    forged[-1]["result"]["accused"] = False
    _rewrite(path, forged[:-1] + [_rehash(forged[-1])])
    check_evidence(path)
    key, _, _, test = tiny_pair
    with pytest.raises(EvidenceError, match="tampered"):
        reverify(path, key, test)


def test_a_line_after_the_result_is_refused(recorded, tiny_pair):
    """A correctly chained line appended to a finished run is tampering or misuse, not more evidence."""
    path, _ = recorded
    key, _, _, test = tiny_pair
    entries = _lines(path)
    extra = _rehash({"type": "batch", "time": entries[-1]["time"], "inputs": ["0" * 64], "response": [[0.1] * 10],
                     "seq": len(entries), "prev": entries[-1]["hash"]})
    _rewrite(path, entries + [extra])
    with pytest.raises(EvidenceError, match="line 10 .*follows the result on line 9.*appended afterwards"):
        check_evidence(path)
    with pytest.raises(EvidenceError, match="line 10 .*follows the result"):
        reverify(path, key, test)
    res = _check_cli(path)
    assert res.exit_code == 2 and "line 10" in res.text and "follows the result" in res.text, res.output
    _rewrite(path, entries)
    with open(path, "a") as f:
        f.write('{"type": "batch", "inpu')  # even a torn line after the result was written after it
    with pytest.raises(EvidenceError, match="line 10 .*follows the result"):
        check_evidence(path)


@pytest.mark.parametrize("sequential", [False, True])
def test_reverify_reproduces_the_result_and_its_verdict(tiny_pair, tmp_path, sequential):
    key, stolen, _, test = tiny_pair
    verifier = _sequential(mode="probs", batch_size=10) if sequential else _fixed(mode="probs")
    path = tmp_path / "run.jsonl"
    result = verify_with_evidence(verifier, stolen, key, test, path, batch_size=32)
    again = reverify(path, key, test)
    assert again.outcome == result.outcome and again.accused and again.sequential == result.sequential
    # The verdict is text a reader acts on: rewriting only it (accused and p unchanged) is caught too.
    entries = _lines(path)
    forged = json.loads(json.dumps(entries[-1]))
    forged["result"]["verdict"] = "H0 not rejected: no evidence that the suspect was trained on the dataset."
    _rewrite(path, entries[:-1] + [_rehash(forged)])
    with pytest.raises(EvidenceError, match="differing: verdict.*tampered"):
        reverify(path, key, test)


def test_new_file_never_overwrites_unless_asked_and_only_with_a_new_record(recorded, tiny_pair):
    path, _ = recorded
    key, stolen, _, test = tiny_pair
    old = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"pass --overwrite to replace it, or --resume .*run.jsonl to "
                                                r"continue it"):
        verify_with_evidence(_fixed(), stolen, key, test, path)
    # A replacing run that fails before its first answer leaves the old record as it was.
    with pytest.raises(SuspectError, match="went away"):
        verify_with_evidence(_fixed(), DiesAfter(stolen, 0), key, test, path, overwrite=True)
    assert path.read_bytes() == old and sorted(p.name for p in path.parent.iterdir()) == ["run.jsonl"]
    verify_with_evidence(_fixed(), stolen, key, test, path, overwrite=True)
    assert path.read_bytes() != old and check_evidence(path).finished


@pytest.mark.parametrize("error", [SuspectError("the suspect went away"), KeyboardInterrupt()],
                         ids=["error", "ctrl-c"])
def test_a_run_that_fails_before_any_answer_leaves_no_file(tiny_pair, tmp_path, error):
    key, stolen, _, test = tiny_pair
    path = tmp_path / "run.jsonl"
    with pytest.raises(type(error)):
        verify_with_evidence(_fixed(), DiesAfter(stolen, 0, error), key, test, path)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its staged copy: the retry is not blocked
    assert verify_with_evidence(_fixed(), stolen, key, test, path).accused


@pytest.mark.parametrize("sequential", [False, True])
def test_interrupted_run_resumes_without_repeating_or_losing_queries(tiny_pair, tmp_path, sequential):
    key, stolen, _, test = tiny_pair
    verifier = _sequential(mode="labels", batch_size=5) if sequential else _fixed(mode="labels")
    labels = stolen.with_outputs("labels")
    reference = verifier.verify(labels, key, test)
    path = tmp_path / "run.jsonl"
    with pytest.warns(EvidenceWarning, match=r"kept as evidence: continue the run with --resume .*run.jsonl"), \
            pytest.raises(SuspectError, match="went away"):
        verify_with_evidence(verifier, DiesAfter(labels, 2), key, test, path, batch_size=8)
    report = check_evidence(path)
    recorded = report.queries
    assert recorded == (10 if sequential else 16) and report.result is None  # 2 chunks answered
    assert not report.finished and report.torn_offset is None
    # Unfinished is not a verdict: the CLI says so and exits 1; there is nothing to re-verify.
    res = _check_cli(path)
    assert res.exit_code == 1 and "UNFINISHED" in res.text and "no verdict" in res.text, res.output
    with pytest.raises(EvidenceError, match="unfinished"):
        reverify(path, key, test)
    size, torn = path.stat().st_size, '{"type": "batch", "inpu'
    with open(path, "a") as f:
        f.write(torn)  # a crash in the middle of writing a line
    report = check_evidence(path)
    assert (report.torn_offset, report.torn_bytes, report.queries) == (size, len(torn), recorded)
    res = _check_cli(path)
    assert res.exit_code == 1 and f"unterminated line at byte {size}" in res.text, res.output
    fresh = stolen.with_outputs("labels")
    with pytest.warns(EvidenceWarning, match=f"unterminated line at byte {size}"):
        result = verify_with_evidence(verifier, fresh, key, test, path, resume=True, batch_size=8)
    assert result.outcome == reference.outcome and result.queries == reference.queries
    assert fresh.queries == reference.queries - recorded  # nothing asked twice
    report = check_evidence(path)
    hashes = [h for b in report.batches for h in b["inputs"]]
    assert len(hashes) == len(set(hashes)) == reference.queries  # nothing lost
    resumes = [e for e in report.entries if e["type"] == "resume"]
    assert len(resumes) == 1 and report.torn_offset is None and report.finished
    assert (resumes[0]["dropped_torn_bytes"], resumes[0]["dropped_torn_offset"]) == (len(torn), size)
    with pytest.raises(EvidenceError, match="already holds a finished run"):
        verify_with_evidence(verifier, fresh, key, test, path, resume=True)


def test_resume_refuses_other_settings(tiny_pair, tmp_path):
    key, stolen, _, test = tiny_pair
    path = tmp_path / "run.jsonl"
    with pytest.warns(EvidenceWarning), pytest.raises(SuspectError):
        verify_with_evidence(_fixed(seed=1), DiesAfter(stolen, 1), key, test, path)
    with pytest.raises(EvidenceError, match="different test"):
        verify_with_evidence(_fixed(seed=2), stolen, key, test, path, resume=True)


def test_resume_refuses_another_suspect(tiny_pair, tmp_path):
    """Answers of two models pooled into one verdict would be a forgery: the header pins the suspect."""
    key, stolen, clean, test = tiny_pair
    path = tmp_path / "run.jsonl"
    with pytest.warns(EvidenceWarning), pytest.raises(SuspectError):
        verify_with_evidence(_fixed(), DiesAfter(stolen, 1), key, test, path)
    before = path.read_bytes()
    recorded = check_evidence(path).header["suspect_sha256"]
    with pytest.raises(EvidenceError, match="another suspect.*start a new file with --evidence") as caught:
        verify_with_evidence(_fixed(), clean, key, test, path, resume=True)
    named = re.findall(r"sha256 ([0-9a-f]{64})", str(caught.value))
    assert len(named) == 2 and named[0] == recorded and named[1] != recorded
    assert path.read_bytes() == before  # nothing appended by the refused run
