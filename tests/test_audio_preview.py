"""The audio preview: a PNG is written atomically, kept unless overwrite is asked for, and bad batches refused."""

import numpy as np
import pytest

from datamark.evaluate.audio_preview import audio_preview
from datamark.exceptions import OutputExistsError, ParameterError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def batch(n: int = 2, length: int = 800, rate: int = 8000):
    t = np.arange(length) / rate
    clean = np.stack([0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) for i in range(n)]).astype(np.float32)
    marked = clean.copy()
    marked[:, :80] += 0.01 * np.sin(2 * np.pi * 3000 * t[:80])  # a quiet pulse at the start
    return clean, marked


def test_writes_a_png_and_refuses_to_overwrite_without_asking(tmp_path):
    clean, marked = batch(n=1)  # one column: each drawing costs about a second on a busy machine
    out = tmp_path / "preview.png"
    audio_preview(clean, marked, out, titles=["3 -> 7"])
    first = out.read_bytes()
    assert first.startswith(PNG_SIGNATURE) and len(first) > 10_000
    with pytest.raises(OutputExistsError):
        audio_preview(clean, marked, out)
    assert out.read_bytes() == first
    audio_preview(clean, clean, out, overwrite=True, sample_rate=16000)  # identical clips: zero difference
    assert out.read_bytes() != first and out.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]  # no temporary file left behind


def test_refuses_mismatched_batches(tmp_path):
    clean, marked = batch()
    with pytest.raises(ParameterError, match="one shape"):
        audio_preview(clean, marked[:, :100], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
