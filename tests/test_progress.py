"""Progress for logs: where stderr is a file, plain lines carry the rate and the ETA (a live bar writes nothing)."""

import io

from datamark._progress import LineProgress, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_progress_writes_rate_and_eta_every_interval_only():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress("train", 100, unit="step", every=30.0, stream=out, clock=clock)
    clock.now = 10.0
    bar.advance(10)
    assert out.getvalue() == ""  # not yet half a minute
    clock.now = 40.0
    bar.status("loss 1.23")
    bar.advance(30)  # 40 steps in 40 s: 1 step/s, 60 left
    assert out.getvalue() == "train: 40/100 step (40 %), 1.0 step/s, elapsed 0:00:40, ETA 0:01:00, loss 1.23\n"
    clock.now = 50.0
    bar.advance(10)
    assert out.getvalue().count("\n") == 1  # the next line waits another 30 s


def test_progress_bar_to_a_log_file_ends_with_a_line(capsys):
    with progress_bar("score", 3, enabled=True, unit="batch") as bar:
        for _ in range(3):
            bar.advance()
    err = capsys.readouterr().err
    assert err.startswith("score: 3/3 batch (100 %)") and "ETA 0:00:00" in err


def test_progress_bar_disabled_is_silent(capsys):
    with progress_bar("score", 3, enabled=False) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""
