"""Evidence files: hash chain, tamper detection, offline re-verification, interrupted runs resumed exactly."""

import json

import pytest

from datamark import Verifier
from datamark.exceptions import EvidenceError, OutputExistsError, SuspectError
from datamark.verify.evidence import check_evidence, reverify, verify_with_evidence
from datamark.verify.sequential import SequentialVerifier


class DiesAfter:
    """A suspect that answers ``calls`` queries, then fails like a server that went away."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls
        self.outputs, self.num_classes, self.queries = inner.outputs, inner.num_classes, 0

    def query(self, inputs):
        if self.calls == 0:
            raise SuspectError("the suspect went away")
        self.calls -= 1
        self.queries += len(inputs)
        return self.inner.query(inputs)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


@pytest.fixture
def recorded(tiny_pair, tmp_path):
    key, stolen, _, test = tiny_pair
    path = tmp_path / "run.jsonl"
    result = verify_with_evidence(Verifier(mode="probs"), stolen, key, test, path, batch_size=32)
    return path, result


def test_chain_records_every_batch_and_no_secret(recorded, tiny_pair):
    path, result = recorded
    key = tiny_pair[0]
    report = check_evidence(path)
    assert [e["type"] for e in report.entries] == ["header"] + ["batch"] * 7 + ["result"]
    assert report.queries == result.queries == 200 and report.result["accused"]
    header = report.header
    assert header["commitment"] == key.commitment and header["test"]["n_probe"] == 100
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
    from datamark.verify.evidence import entry_hash

    forged = json.loads(json.dumps(entries))
    forged[-1]["result"]["accused"] = False
    forged[-1]["hash"] = entry_hash({k: v for k, v in forged[-1].items() if k != "hash"})
    _rewrite(path, forged)
    check_evidence(path)
    key, _, _, test = tiny_pair
    with pytest.raises(EvidenceError, match="tampered"):
        reverify(path, key, test)


def test_reverify_reproduces_the_result_offline(recorded, tiny_pair):
    path, result = recorded
    key, _, _, test = tiny_pair
    again = reverify(path, key, test)
    assert again.outcome == result.outcome and again.accused


def test_new_file_never_overwrites(recorded, tiny_pair):
    path, _ = recorded
    key, stolen, _, test = tiny_pair
    with pytest.raises(OutputExistsError):
        verify_with_evidence(Verifier(), stolen, key, test, path)


@pytest.mark.parametrize("sequential", [False, True])
def test_interrupted_run_resumes_without_repeating_or_losing_queries(tiny_pair, tmp_path, sequential):
    key, stolen, _, test = tiny_pair
    verifier = SequentialVerifier(mode="labels", batch_size=5) if sequential else Verifier(mode="labels")
    labels = stolen.with_outputs("labels")
    reference = verifier.verify(labels, key, test)
    path = tmp_path / "run.jsonl"
    with pytest.raises(SuspectError, match="went away"):
        verify_with_evidence(verifier, DiesAfter(labels, 2), key, test, path, batch_size=8)
    recorded = check_evidence(path).queries
    assert recorded == (10 if sequential else 16) and check_evidence(path).result is None  # 2 chunks answered
    with open(path, "a") as f:
        f.write('{"type": "batch", "inpu')  # a crash in the middle of writing a line
    fresh = stolen.with_outputs("labels")
    result = verify_with_evidence(verifier, fresh, key, test, path, resume=True, batch_size=8)
    assert result.outcome == reference.outcome and result.queries == reference.queries
    assert fresh.queries == reference.queries - recorded  # nothing asked twice
    report = check_evidence(path)
    hashes = [h for b in report.batches for h in b["inputs"]]
    assert len(hashes) == len(set(hashes)) == reference.queries  # nothing lost
    assert [e["type"] for e in report.entries].count("resume") == 1
    with pytest.raises(EvidenceError, match="already holds a finished run"):
        verify_with_evidence(verifier, fresh, key, test, path, resume=True)


def test_resume_refuses_other_settings(tiny_pair, tmp_path):
    key, stolen, _, test = tiny_pair
    path = tmp_path / "run.jsonl"
    with pytest.raises(SuspectError):
        verify_with_evidence(Verifier(seed=1), DiesAfter(stolen, 1), key, test, path)
    with pytest.raises(EvidenceError, match="different test"):
        verify_with_evidence(Verifier(seed=2), stolen, key, test, path, resume=True)
