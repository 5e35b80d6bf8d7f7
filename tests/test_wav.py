"""The WAV codec: round trips per format, mixdown, refusals that name the file, resampling and the length policy."""

import io
import struct
import warnings
import wave

import numpy as np
import pytest

from datamark.data import shared_data_dir
from datamark.data.wav import WavInfo, fit_length, read_wav, resample, splice, write_wav
from datamark.exceptions import AudioFormatWarning, DataError, DataFormatError, ParameterError

_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def stdlib_wav(frames: bytes, width: int, rate: int = 8000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels), w.setsampwidth(width), w.setframerate(rate)
        w.writeframes(frames)
    return buffer.getvalue()


def hand_wav(code: int, channels: int, rate: int, width: int, body: bytes, *, extensible: bool = False,
             declared: int | None = None, extra: bytes = b"") -> bytes:
    """A RIFF/WAVE file built by hand: plain or EXTENSIBLE format chunk, optional extra chunks before the data,
    and a data size that may lie (``declared``)."""
    block = channels * width
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else code, channels, rate, rate * block, block, 8 * width)
    if extensible:
        fmt += struct.pack("<HHI", 22, 8 * width, 0) + struct.pack("<H", code) + _GUID_TAIL
    payload = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
               + b"data" + struct.pack("<I", len(body) if declared is None else declared) + body)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def int16_grid(n: int = 101, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).integers(-32768, 32768, n) / 32768.0).astype(np.float32)


def test_16_bit_matches_stdlib_wave_byte_for_byte_and_round_trips_exactly():
    x = int16_grid()
    x[:2] = -1.0, 32767 / 32768
    out = write_wav(x, WavInfo(8000, 2, 1, len(x)))
    assert out == stdlib_wav((x * 32768).astype("<i2").tobytes(), 2)
    assert len(out) == 44 + 2 * len(x)
    back, info = read_wav(out, "clip.wav")
    assert back.dtype == np.float32 and np.array_equal(back, x)
    assert info == WavInfo(8000, 2, 1, len(x), False)
    assert write_wav(x, info) == out  # deterministic


@pytest.mark.parametrize("width", [1, 3, 4])
def test_other_pcm_widths_match_stdlib_and_round_trip_within_one_step(width):
    x = np.linspace(-1, 1, 64, dtype=np.float32) * 0.9
    out = write_wav(x, WavInfo(16000, width, 1, 0))
    back, info = read_wav(out, "w.wav")
    assert info == WavInfo(16000, width, 1, 64)
    assert np.max(np.abs(back - x)) <= 0.5 / 2 ** (8 * width - 1) + 1e-7
    with wave.open(io.BytesIO(out)) as w:  # stdlib reads it and sees the same samples
        assert (w.getsampwidth(), w.getframerate(), w.getnframes()) == (width, 16000, 64)
        assert out.endswith(w.readframes(64))
    if width == 3:
        assert np.array_equal(read_wav(write_wav(back, info), "w.wav")[0], back)  # exact on the 24-bit grid


def test_odd_length_data_gets_a_pad_byte_and_reads_back():
    out = write_wav(np.array([0.5, -0.5, 0.0], np.float32), WavInfo(8000, 1, 1, 3))
    assert len(out) == 44 + 3 + 1 and struct.unpack_from("<I", out, 4)[0] == len(out) - 8
    assert np.array_equal(read_wav(out, "odd.wav")[0], [0.5, -0.5, 0.0])


def test_quantisation_rounds_and_clips():
    out = write_wav(np.array([1.5, -2.0, 0.4 / 32768, 0.6 / 32768], np.float32), WavInfo(8000, 2, 1, 4))
    assert np.frombuffer(out[44:], "<i2").tolist() == [32767, -32768, 0, 1]


@pytest.mark.parametrize("width", [4, 8])
def test_float_round_trip_keeps_format_and_scipy_reads_it(width):
    from scipy.io import wavfile

    x = np.sin(np.linspace(0, 20, 50)).astype(np.float32) * 0.7
    out = write_wav(x, WavInfo(22050, width, 1, 50, float_format=True))
    back, info = read_wav(out, "f.wav")
    assert info == WavInfo(22050, width, 1, 50, True) and np.array_equal(back, x)
    rate, data = wavfile.read(io.BytesIO(out))
    assert rate == 22050 and data.dtype == (np.float32 if width == 4 else np.float64) and np.allclose(data, x)


def test_float_files_are_clipped_and_nan_is_refused():
    loud = hand_wav(3, 1, 8000, 4, np.array([2.0, -3.0, 0.25], "<f4").tobytes())
    assert read_wav(loud, "loud.wav")[0].tolist() == [1.0, -1.0, 0.25]
    with pytest.raises(DataError, match="nan.wav.*NaN"):
        read_wav(hand_wav(3, 1, 8000, 4, np.array([np.nan], "<f4").tobytes()), "nan.wav")


@pytest.mark.parametrize("code,width,dtype,scale", [(1, 2, "<i2", 32768), (1, 4, "<i4", 2**31), (3, 4, "<f4", 1),
                                                    (3, 8, "<f8", 1)])
def test_extensible_wrapping_pcm_and_float_is_read(code, width, dtype, scale):
    values = np.array([0.5, -0.25, 0.125])
    data = hand_wav(code, 1, 48000, width, (values * scale).astype(dtype).tobytes(), extensible=True)
    back, info = read_wav(data, "ext.wav")
    assert np.allclose(back, values) and info == WavInfo(48000, width, 1, 3, code == 3)


def test_unknown_chunks_before_data_are_skipped_including_odd_pad():
    body = np.array([1000, -1000], "<i2").tobytes()
    data = hand_wav(1, 1, 8000, 2, body, extra=b"LIST" + struct.pack("<I", 3) + b"abc\x00")
    assert np.array_equal(read_wav(data, "x.wav")[0], np.array([1000, -1000]) / 32768)


def test_stereo_is_averaged_to_mono_with_one_warning_naming_the_file():
    left, right = np.array([1000, -2000, 300], "<i2"), np.array([3000, 0, -301], "<i2")
    data = stdlib_wav(np.stack([left, right], 1).tobytes(), 2, channels=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mono, info = read_wav(data, "stereo.wav")
    assert [w.category for w in caught] == [AudioFormatWarning]
    assert "stereo.wav" in str(caught[0].message) and "mixed down" in str(caught[0].message)
    assert np.allclose(mono, (left + right.astype(float)) / 2 / 32768) and info.channels == 2
    both, _ = read_wav(data, "stereo.wav", mono=False)
    assert both.shape == (3, 2) and np.allclose(both[:, 1], right / 32768)
    written = write_wav(mono, info)  # released mono, in the file's format
    assert read_wav(written, "m.wav")[1] == WavInfo(8000, 2, 1, 3)


@pytest.mark.parametrize("data,problem", [
    (b"ID3\x04" + b"\x00" * 60, "not a WAV"),
    (b"RIFF\x00\x00", "truncated header"),
    (stdlib_wav(b"\x00\x01" * 10, 2)[:30], "truncated"),
    (stdlib_wav(b"\x00\x01" * 10, 2)[:40], "no 'data' chunk"),
    (hand_wav(1, 1, 8000, 2, b"\x00" * 10, declared=400), "truncated"),
    (hand_wav(1, 1, 8000, 2, b"\x00" * 9), "inside a 2-byte frame"),
    (hand_wav(6, 1, 8000, 1, b"\x00" * 10), "A-law"),
    (hand_wav(0x55, 1, 8000, 1, b"\x00" * 10), "MP3"),
    (hand_wav(7, 1, 8000, 1, b"\x00" * 10, extensible=True), "mu-law"),
    (hand_wav(1, 0, 8000, 2, b"\x00" * 10), "corrupt header"),
])
def test_broken_or_unsupported_files_are_refused_naming_the_file(data, problem):
    with pytest.raises(DataFormatError, match=problem) as err:
        read_wav(data, "speaker/7_x_3.wav")
    message = str(err.value)
    assert message.startswith("speaker/7_x_3.wav: ") and "\n" not in message


def test_codec_refusal_says_how_to_convert():
    with pytest.raises(DataFormatError, match="pcm_s16le"):
        read_wav(hand_wav(6, 1, 8000, 1, b"\x00" * 10), "alaw.wav")


def test_empty_clip_is_a_data_error():
    with pytest.raises(DataError, match="empty.wav.*0 frames"):
        read_wav(stdlib_wav(b"", 2), "empty.wav")


def test_write_refuses_what_it_cannot_write():
    with pytest.raises(ParameterError, match="1-d"):
        write_wav(np.zeros((2, 3), np.float32), WavInfo(8000, 2, 1, 3))
    with pytest.raises(ParameterError, match="sample_width"):
        write_wav(np.zeros(3, np.float32), WavInfo(8000, 3, 1, 3, float_format=True))
    with pytest.raises(DataError, match="NaN"):
        write_wav(np.array([np.nan], np.float32), WavInfo(8000, 2, 1, 1))


def test_resample_keeps_duration_and_a_tones_frequency():
    rate, tone = 16000, 440.0
    x = np.sin(2 * np.pi * tone * np.arange(rate) / rate).astype(np.float32)
    y = resample(x, rate, 8000)
    assert y.dtype == np.float32 and len(y) == 8000
    assert np.argmax(np.abs(np.fft.rfft(y))) * 8000 / len(y) == pytest.approx(tone, abs=1.0)
    assert len(resample(x[:441], 44100, 8000)) == 80  # ratio reduced by the gcd
    assert np.array_equal(resample(x, rate, rate), x)
    with pytest.raises(ParameterError, match="positive"):
        resample(x, 0, 8000)


def test_resample_removes_what_the_new_rate_cannot_hold():
    x = np.sin(2 * np.pi * 3500 * np.arange(8000) / 8000).astype(np.float32)  # above 2 kHz Nyquist of 4 kHz
    assert np.max(np.abs(resample(x, 8000, 4000)[100:-100])) < 0.05


def test_fit_length_pads_or_crops_the_end():
    x = np.arange(1, 6, dtype=np.float32)
    assert fit_length(x, 3).tolist() == [1, 2, 3]
    assert fit_length(x, 7).tolist() == [1, 2, 3, 4, 5, 0, 0]
    assert fit_length(np.ones((2, 4), np.float32), 6).shape == (2, 6)
    with pytest.raises(ParameterError):
        fit_length(x, 0)


def test_splice_keeps_the_files_length_and_tail():
    original = np.arange(10, dtype=np.float32)
    out = splice(original, np.full(4, -1, np.float32))
    assert out.tolist() == [-1] * 4 + list(range(4, 10)) and original[0] == 0
    assert splice(original[:3], np.full(6, -1, np.float32)).tolist() == [-1, -1, -1]  # padding dropped


def test_fit_then_splice_round_trip_of_a_marked_clip():
    original = int16_grid(300, seed=1)
    marked = fit_length(original, 200) + np.float32(1 / 32768)
    out = splice(original, marked)
    assert len(out) == 300 and np.array_equal(out[200:], original[200:]) and np.array_equal(out[:200], marked)


def fsdd_files(count: int = 3):
    folder = shared_data_dir() / "fsdd" / "recordings"
    files = sorted(folder.glob("*.wav"))[:count] if folder.is_dir() else []
    if not files:
        pytest.skip(f"no FSDD recordings in {folder} (set DATAMARK_DATA to the shared data folder)")
    return files


def test_real_fsdd_recordings_read_like_stdlib_and_rewrite_byte_identically():
    for path in fsdd_files():
        data = path.read_bytes()
        x, info = read_wav(data, path.name)
        assert (info.sample_rate, info.sample_width, info.channels) == (8000, 2, 1)
        with wave.open(str(path)) as w:
            ints = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            assert info.frames == w.getnframes()
        assert np.array_equal(x * 32768, ints) and np.abs(x).max() <= 1
        assert write_wav(x, info) == stdlib_wav(ints.tobytes(), 2)
