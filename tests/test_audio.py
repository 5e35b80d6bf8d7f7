"""Audio on the modality seam: the pulse trigger, WAV folders and Hugging Face Audio columns written back in their
own format, the key's sample rate, PGD on waveforms, and FSDD's split."""

import io
import wave

import numpy as np
import pytest

from datamark import UBWP, BadNets
from datamark.data import from_waveforms, load_data, shared_data_dir
from datamark.exceptions import AudioFormatWarning, DataError, DataFormatError, KeyMismatchError, ParameterError
from datamark.modalities import AudioModality, modality_of
from datamark.triggers import Trigger
from datamark.triggers.audio import PulseTrigger, make_pulse_trigger, paper_pulse

RATE = 800  # a small sample rate keeps the synthetic clips short


def _wav(samples: np.ndarray, rate: int = RATE, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()


def _clip(i: int, n: int) -> np.ndarray:
    t = np.arange(n) / RATE
    return (8000 * np.sin(2 * np.pi * (60 + 15 * (i % 5)) * t) + 200 * np.cos(3 * t + i)).astype(np.int16)


def _folder(root, n_per_class=12, classes=("a", "b", "c")):
    """A label-prefixed WAV folder: clips of varying length (0.6-1.4 s at 800 Hz), so padding and cropping both
    happen."""
    root.mkdir()
    for label in classes:
        for j in range(n_per_class):
            (root / f"{label}_spk_{j}.wav").write_bytes(_wav(_clip(j, 480 + 40 * j)))
    return root


def test_pulse_trigger_replaces_only_its_stretch_relative_to_the_clip():
    rng = np.random.default_rng(0)
    assert make_pulse_trigger(rng).duration == 800 and make_pulse_trigger(rng).shape == "tone"  # default: 100 ms
    trigger = paper_pulse(rng, sample_rate=8000)
    assert trigger.duration == 50 and trigger.start < 1000  # the paper's 50 samples, in the first 125 ms
    clips = np.stack([0.5 * np.sin(np.arange(8000) / 7), 0.05 * np.sin(np.arange(8000) / 5)]).astype(np.float32)
    marked = trigger.apply(clips)
    assert marked.dtype == np.float32 and marked.shape == clips.shape
    changed = np.flatnonzero(np.any(marked != clips, axis=0))
    assert changed.min() >= trigger.start and changed.max() < trigger.end
    peaks = np.abs(clips).max(axis=1)
    assert np.allclose(marked[:, trigger.start], peaks * 10 ** (-20 / 20), rtol=1e-5)  # -20 dB re the clip's peak
    again = Trigger.from_config(trigger.to_config())
    assert isinstance(again, PulseTrigger) and np.array_equal(again.apply(clips), marked)
    assert "start" not in repr(trigger)  # the place is secret


def test_pulse_variants_and_independent_triggers_differ():
    rng = np.random.default_rng(1)
    clip = np.full((1, 8000), 0.1, dtype=np.float32)
    for shape in ("constant", "tone", "noise"):
        trigger = make_pulse_trigger(rng, shape=shape, sample_rate=8000)
        other = trigger.independent(rng)
        assert other.shape == shape and other.duration == trigger.duration
        assert not np.array_equal(other.apply(clip), trigger.apply(clip))
    full_scale = PulseTrigger(100, 50, level_db=-46.0, reference="full-scale")
    assert np.allclose(full_scale.apply(clip)[0, 100:150], 10 ** (-46 / 20))  # the paper's 0.005
    with pytest.raises(ParameterError, match="Nyquist"):
        PulseTrigger(0, 10, shape="tone", frequency=5000.0, sample_rate=8000)
    with pytest.raises(ParameterError, match="level_db"):
        PulseTrigger(0, 10, level_db=6.0)


def test_a_clip_that_ends_before_the_pulse_cannot_carry_it():
    trigger = PulseTrigger(100, 50)
    clips = np.zeros((2, 400), dtype=np.float32)
    clips[0, :300] = 0.1  # sound goes on past the pulse
    clips[1, :120] = 0.1  # zero-padded from sample 120: the pulse would be cut off on writing
    assert trigger.applicable(clips).tolist() == [True, False]


def test_waveform_batches_are_validated():
    modality = AudioModality(8000)
    with pytest.raises(DataError, match="32768"):
        modality.batch(np.zeros((2, 10), dtype=np.int16))
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        modality.batch(np.full((2, 10), 2.0, dtype=np.float32))
    with pytest.raises(DataError, match="NaN"):
        modality.batch(np.full((2, 10), np.nan, dtype=np.float32))
    assert modality_of(np.zeros((3, 50), dtype=np.float32)).name == "audio"


def test_label_prefixed_wav_folder_round_trips_with_its_format(tmp_path):
    root = _folder(tmp_path / "clips")
    data = load_data(root)
    assert data.modality.name == "audio" and data.modality.sample_rate == RATE and data.class_names == ("a", "b", "c")
    assert data.input_shape == (RATE,)  # one second, padded or cropped
    marked = BadNets(seed=0, n_marks=3, rate=0.5).apply(data)
    assert marked.key.dataset["sample_rate"] == RATE and marked.key.dataset["modality"] == "audio"
    out = tmp_path / "out"
    marked.dataset.save(out)
    files = {p.name for p in out.glob("*.wav")}
    assert len(files) == len(data)
    unchanged = [rel for i, rel in enumerate(data.files) if i not in set(marked.rows.tolist())]
    assert all((out / rel).read_bytes() == (root / rel).read_bytes() for rel in unchanged)
    back = load_data(out)
    assert sorted(back.ids) == sorted(marked.dataset.ids)  # the files hold exactly what the records did
    for row in marked.rows[:5]:
        rel = data.files[row]
        label = data.class_names[marked.dataset.labels[row]]
        name = f"{label}_{rel.split('_', 1)[1]}"
        with wave.open(str(out / name)) as w:  # 16-bit stays 16-bit; the file keeps its own length
            original = wave.open(str(root / rel))
            assert (w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, RATE, original.getnframes())
    assert not (root / ".datamark-output").exists() and len(list(root.iterdir())) == len(data)  # input untouched


def test_stereo_other_rates_and_corrupt_headers(tmp_path):
    root = _folder(tmp_path / "clips", n_per_class=3)
    stereo = np.repeat(_clip(0, 600)[:, None], 2, axis=1).ravel()
    (root / "a_stereo_9.wav").write_bytes(_wav(stereo, channels=2))
    (root / "b_fast_9.wav").write_bytes(_wav(_clip(1, 1200), rate=2 * RATE))
    data = load_data(root)
    with pytest.warns(AudioFormatWarning) as caught:
        data.inputs()
    messages = " ".join(str(w.message) for w in caught)
    assert "mixed down to mono" in messages and f"resampled to {RATE} Hz" in messages
    (root / "c_bad_9.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(DataFormatError):
        load_data(root).inputs()


def test_hugging_face_audio_column_round_trips(tmp_path):
    """A Parquet file as ``datasets`` writes one with an ``Audio`` feature (built with pyarrow: encoding audio in
    ``datasets`` itself needs torchcodec)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    clips = [{"bytes": _wav(_clip(i, 500 + 20 * i)), "path": None} for i in range(30)]
    features = {"audio": {"_type": "Audio", "sampling_rate": RATE, "decode": False},
                "label": {"_type": "ClassLabel", "names": ["x", "y", "z"]}}
    table = pa.table({"audio": pa.array(clips, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array([i % 3 for i in range(30)], pa.int64())})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp_path / "a.parquet")
    data = load_data(tmp_path / "a.parquet")
    assert data.modality.name == "audio" and data.modality.sample_rate == RATE and data.class_names == ("x", "y", "z")
    marked = UBWP(seed=0, n_marks=1, rate=0.2).apply(data)
    marked.dataset.save(tmp_path / "b.parquet")
    back = load_data(tmp_path / "b.parquet")
    assert back.ids == marked.dataset.ids
    kept = [i for i in range(30) if i not in set(marked.rows.tolist())]
    assert all(back.ids[i] == data.ids[i] for i in kept)
    assert np.abs(back.take(marked.rows) - marked.dataset.take(marked.rows)).max() <= 1 / 32768 + 1e-7


def test_in_memory_waveforms_keep_their_sample_rate(tmp_path):
    waves = np.stack([_clip(i, RATE) / 32768 for i in range(20)]).astype(np.float32)
    data = from_waveforms(waves, np.arange(20) % 2, sample_rate=RATE)
    data.save(tmp_path / "w.npz")
    back = load_data(tmp_path / "w.npz")
    assert back.modality.sample_rate == RATE and np.array_equal(back.inputs(), waves)
    key = BadNets(seed=0, n_marks=2, rate=0.2).apply(data).key
    with pytest.raises(KeyMismatchError, match="Hz"):
        key.check_data(2, (RATE,), "the probes", sample_rate=16000)


@pytest.mark.skipif(not (shared_data_dir() / "fsdd" / "recordings").is_dir(), reason="FSDD is not staged "
                    "(set DATAMARK_DATA to the shared data folder)")
def test_fsdd_split_is_index_0_to_4_for_test():
    train, test = load_data("fsdd:train"), load_data("fsdd:test")
    assert (len(train), len(test)) == (2700, 300)
    assert test.class_names == tuple("0123456789") and test.modality.sample_rate == 8000
    assert all(int(f.rsplit("_", 1)[1].split(".")[0]) < 5 for f in test.files)
    assert not set(train.ids) & set(test.ids)


def test_cli_protects_a_wav_folder_with_a_preview(tmp_path):
    from typer.testing import CliRunner

    from datamark.cli import app

    root = _folder(tmp_path / "clips")
    out, key, picture = tmp_path / "wm", tmp_path / "k.json", tmp_path / "p.png"
    result = CliRunner().invoke(app, ["protect", str(root), "--out", str(out), "--key", str(key), "--preview",
                                      str(picture), "--seed", "0", "--n-marks", "3", "--rate", "0.3"])
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(list(out.glob("*.wav"))) == 36
    refused = CliRunner().invoke(app, ["protect", str(root), "--out", str(tmp_path / "x"), "--key",
                                       str(tmp_path / "x.json"), "--trigger", "word"])
    assert refused.exit_code != 0 and "for text data" in refused.output


def test_json_endpoint_gets_waveforms_and_the_sample_rate():
    import json

    import httpx

    from datamark.suspects import JSONSuspect, JSONTemplate

    seen = []

    def answer(request):
        body = json.loads(request.content)
        seen.append(body)
        return httpx.Response(200, json={"predictions": [[0.25, 0.75]] * len(body["clips"])})

    template = JSONTemplate(request={"clips": "$inputs", "rate": "$sample_rate"}, datatype="FP32", layout="NL",
                            scale=1.0)
    clips = np.zeros((3, 40), dtype=np.float32)
    clips[:, 5] = 0.5
    with JSONSuspect("http://suspect.test", template, num_classes=2, sample_rate=RATE,
                     transport=httpx.MockTransport(answer), retries=0) as remote:
        assert remote.query(clips).shape == (3, 2)
        assert remote.describe()["sample_rate"] == RATE
    assert seen[0]["rate"] == RATE and np.allclose(seen[0]["clips"], clips)
    with pytest.raises(ParameterError, match="sample_rate"):
        JSONSuspect("http://suspect.test", template, num_classes=2)
