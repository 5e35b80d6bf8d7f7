"""The WAV codec of the audio modality: WAV bytes <-> float32 waveforms in [-1, 1], and the length policy.

:func:`read_wav` parses the RIFF chunks itself, because the stdlib ``wave`` module refuses IEEE float files and
``WAVE_FORMAT_EXTENSIBLE`` (what most tools write for 24-bit, 32-bit and multichannel audio). Supported: PCM
8-bit unsigned, 16/24/32-bit signed, IEEE float 32/64, and EXTENSIBLE wrapping any of those. Everything else
(A-law, mu-law, ADPCM, MP3-in-WAV, RF64) is refused with the ``ffmpeg`` line that converts it.

:func:`write_wav` writes a mono clip back in the format it was read from (sample width and float-ness kept), so
a watermarked dataset is released in the same format as the original one. Models see fixed-length clips: the
first ``length`` samples, zero-padded at the end when shorter (:func:`fit_length`); :func:`splice` puts a marked
fixed-length clip back into the full original, so a released file keeps its own length and tail.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from ..exceptions import AudioFormatWarning, DataError, DataFormatError, ParameterError

__all__ = ["WavInfo", "fit_length", "read_wav", "resample", "splice", "write_wav"]

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# The 14 bytes after the 2-byte format code in an EXTENSIBLE SubFormat GUID (KSDATAFORMAT_SUBTYPE_*).
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_CODEC_NAMES = {0x0002: "Microsoft ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM",
                0x0031: "GSM 6.10", 0x0050: "MPEG audio", 0x0055: "MP3", 0x1610: "AAC"}
_FIX = "re-encode it as PCM WAV, e.g. `ffmpeg -i in.wav -c:a pcm_s16le out.wav`"
_RECOPY = "the file was cut short: copy or export it again"


@dataclass(frozen=True)
class WavInfo:
    """What a WAV file holds: ``sample_width`` is bytes per sample (1, 2, 3 or 4; 4 or 8 when ``float_format``
    is set, for IEEE float files), ``frames`` the samples per channel."""

    sample_rate: int
    sample_width: int
    channels: int
    frames: int
    float_format: bool = False


def _bad(where: str, problem: str, fix: str = _FIX) -> DataFormatError:
    return DataFormatError(f"{where}: {problem}; {fix}.")


def _chunks(data: bytes, where: str) -> tuple[bytes, bytes]:
    """The ``fmt `` and ``data`` chunk bodies of a RIFF/WAVE file. The RIFF size field is not trusted (streaming
    writers leave it wrong); a data chunk shorter than it declares is a truncated file and refused."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] == b"RF64":
            raise _bad(where, "is an RF64 (64-bit RIFF) file, which datamark does not read")
        if data[:4] == b"RIFF" and len(data) < 12:
            raise _bad(where, f"has a truncated header ({len(data)} bytes)", _RECOPY)
        raise _bad(where, "is not a WAV file (no RIFF/WAVE header)", "convert it with `ffmpeg -i in -c:a pcm_s16le "
                   "out.wav`, or remove it from the dataset")
    fmt = body = None
    pos = 12
    while pos + 8 <= len(data) and (fmt is None or body is None):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        start, end = pos + 8, pos + 8 + size
        if end > len(data):
            what = "its audio data" if cid == b"data" else f"its '{cid.decode('latin-1')}' chunk"
            raise _bad(where, f"is truncated: {what} declares {size} bytes but only {len(data) - start} are present",
                       _RECOPY)
        if cid == b"fmt ":
            fmt = data[start:end]
        elif cid == b"data":
            body = data[start:end]
        pos = end + (size & 1)  # chunks are padded to an even length
    if fmt is None or body is None:
        missing = "format ('fmt ')" if fmt is None else "'data'"
        raise _bad(where, f"has a corrupt or truncated header (no {missing} chunk)")
    return fmt, body


def _parse_fmt(fmt: bytes, where: str) -> tuple[int, int, int, int]:
    """(format code PCM or float, channels, sample rate, container bytes per sample) from a ``fmt `` chunk."""
    if len(fmt) < 16:
        raise _bad(where, f"has a corrupt header (a {len(fmt)}-byte format chunk; at least 16 expected)")
    code, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == _EXTENSIBLE:
        if len(fmt) < 40:
            raise _bad(where, f"has a corrupt header (a {len(fmt)}-byte EXTENSIBLE format chunk; 40 expected)")
        guid = fmt[24:40]
        code = struct.unpack_from("<H", guid)[0] if guid[2:] == _GUID_TAIL else -1
    if code not in (_PCM, _FLOAT):
        name = _CODEC_NAMES.get(code, "an unknown sub-format" if code == -1 else f"format code 0x{code:04x}")
        raise _bad(where, f"uses the {name} codec, which datamark does not decode")
    if channels < 1 or rate < 1 or block_align < 1 or block_align % channels:
        raise _bad(where, f"has a corrupt header ({channels} channels, {rate} Hz, {block_align}-byte frames)")
    width = block_align // channels
    valid = (1, 2, 3, 4) if code == _PCM else (4, 8)
    if width not in valid or not 0 < bits <= 8 * width:
        kind = "PCM" if code == _PCM else "float"
        raise _bad(where, f"has {bits}-bit {kind} samples in {width}-byte containers, which datamark does not read")
    return code, channels, rate, width


def _decode(body: bytes, code: int, width: int) -> np.ndarray:
    """Interleaved samples as float64 in [-1, 1] (integer PCM over its full scale, e.g. int16 / 32768)."""
    if code == _FLOAT:
        return np.frombuffer(body, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
    if width == 1:
        return (np.frombuffer(body, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        raw = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        return ((ints ^ 0x800000) - 0x800000).astype(np.float64) / float(1 << 23)
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(body, dtype=dtype).astype(np.float64) / float(1 << (8 * width - 1))


def read_wav(data: bytes, where: str, *, mono: bool = True) -> tuple[np.ndarray, WavInfo]:
    """Decode WAV ``data`` (``where`` names the file in errors) into float32 samples in [-1, 1] and its format.

    With ``mono`` (the default) the result is 1-d; a multichannel file is averaged down to mono with one
    :class:`AudioFormatWarning`. With ``mono=False`` it is frames x channels. Float files are clipped to
    [-1, 1]. Raises :class:`DataFormatError` for a file that is not a WAV, is corrupt or truncated, or uses a
    codec other than PCM / IEEE float, and :class:`DataError` for a clip without samples or with NaNs."""
    fmt, body = _chunks(bytes(data), where)
    code, channels, rate, width = _parse_fmt(fmt, where)
    block = channels * width
    if len(body) % block:
        raise _bad(where, f"is truncated: its audio data ({len(body)} bytes) ends inside a {block}-byte frame",
                   _RECOPY)
    frames = len(body) // block
    if frames == 0:
        raise DataError(f"{where}: the WAV file holds no samples (0 frames); remove it or replace it with a recording.")
    samples = _decode(body, code, width).reshape(frames, channels)
    if code == _FLOAT:
        if not np.isfinite(samples).all():
            raise DataError(f"{where}: the float WAV file contains NaN or infinite samples; re-export it.")
        samples = np.clip(samples, -1.0, 1.0)
    info = WavInfo(rate, width, channels, frames, code == _FLOAT)
    if not mono:
        return samples.astype(np.float32), info
    if channels > 1:
        warnings.warn(f"{where}: {channels} channels were mixed down to mono (averaged).", AudioFormatWarning,
                      stacklevel=2)
    return samples.mean(axis=1).astype(np.float32), info


def _encode(wave: np.ndarray, width: int, float_format: bool) -> bytes:
    """Samples in [-1, 1] as little-endian WAV sample bytes: rounded to the nearest step, clipped to the range."""
    if float_format:
        return wave.astype("<f4" if width == 4 else "<f8").tobytes()
    scale = float(1 << (8 * width - 1))
    ints = np.clip(np.rint(wave * scale), -scale, scale - 1).astype(np.int64)
    if width == 1:
        return (ints + 128).astype(np.uint8).tobytes()
    if width == 3:
        return ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return ints.astype("<i2" if width == 2 else "<i4").tobytes()


def write_wav(wave: np.ndarray, info: WavInfo) -> bytes:
    """A mono waveform (1-d, in [-1, 1]) as WAV bytes in ``info``'s sample rate, width and PCM/float format.

    The output is always mono (``info.channels`` and ``info.frames`` are ignored): a clip that was mixed down
    on reading is released as one channel. Samples are clipped to [-1, 1] and, for PCM, rounded to the nearest
    step. The bytes are deterministic; 16-bit (any even-length PCM) output is byte-identical to the stdlib
    ``wave`` module's canonical 44-byte header; float files get the 18-byte format chunk and ``fact`` chunk of
    the spec. Odd-length data gets the RIFF pad byte."""
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ParameterError(f"write_wav expects a non-empty mono 1-d waveform, got shape {wave.shape}; pass one clip.")
    if not np.isfinite(wave).all():
        raise DataError("write_wav got NaN or infinite samples; clip or repair the waveform before writing it.")
    valid = (4, 8) if info.float_format else (1, 2, 3, 4)
    if info.sample_width not in valid or int(info.sample_rate) < 1:
        raise ParameterError(f"write_wav cannot write {info}: sample_width must be one of {valid} and "
                             "sample_rate positive.")
    width, rate = info.sample_width, int(info.sample_rate)
    samples = _encode(np.clip(wave.astype(np.float64), -1.0, 1.0), width, info.float_format)
    code = _FLOAT if info.float_format else _PCM
    fmt = struct.pack("<HHIIHH", code, 1, rate, rate * width, width, 8 * width)
    chunks = [b"fmt ", struct.pack("<I", 16), fmt]
    if info.float_format:
        chunks = [b"fmt ", struct.pack("<IHHIIHHH", 18, code, 1, rate, rate * width, width, 8 * width, 0),
                  b"fact", struct.pack("<II", 4, len(wave))]
    chunks += [b"data", struct.pack("<I", len(samples)), samples, b"\x00" * (len(samples) & 1)]
    payload = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``wave`` (1-d, or a batch along the last axis) resampled from ``from_rate`` to ``to_rate`` Hz, float32.

    Band-limited polyphase filtering (``scipy.signal.resample_poly`` with the ratio reduced by its gcd), so
    downsampling does not alias; the length becomes ``ceil(len * to_rate / from_rate)``."""
    if int(from_rate) < 1 or int(to_rate) < 1:
        raise ParameterError(f"resample needs positive sample rates, got {from_rate} -> {to_rate} Hz.")
    wave = np.asarray(wave, dtype=np.float32)
    if from_rate == to_rate:
        return wave.copy()
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(wave, int(to_rate) // g, int(from_rate) // g, axis=-1).astype(np.float32)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples of ``wave`` (along the last axis), zero-padded at the end when it is shorter.

    This is the documented length policy: models see a clip's first ``length`` samples; :func:`splice` writes a
    marked clip back without losing the rest of the file."""
    if int(length) < 1:
        raise ParameterError(f"fit_length needs a positive length, got {length}.")
    wave = np.asarray(wave)
    out = np.zeros(wave.shape[:-1] + (int(length),), dtype=wave.dtype)
    n = min(int(length), wave.shape[-1])
    out[..., :n] = wave[..., :n]
    return out


def splice(original: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """``original`` (float32, its own length) with its first ``min(len(original), len(marked))`` samples replaced
    by ``marked``'s: a marked fixed-length clip keeps the file's length and its tail beyond ``length``, and
    padding that :func:`fit_length` added past a short file's end is dropped."""
    original, marked = np.asarray(original), np.asarray(marked)
    if original.ndim != 1 or marked.ndim != 1:
        raise ParameterError(f"splice expects two 1-d clips, got shapes {original.shape} and {marked.shape}.")
    out = original.astype(np.float32, copy=True)
    n = min(len(original), len(marked))
    out[:n] = marked[:n]
    return out
