"""Audio end to end on a slice of FSDD with the fast log-mel CNN: protect -> train -> verify in the three scenarios,
the clean-label watermark's perturbation budget, and the same model over KServe V2 (FP32 waveforms + sample rate).
"""

import numpy as np
import pytest

from datamark import BadNets, CleanLabel, load_data
from datamark.data import shared_data_dir
from datamark.exceptions import SuspectError
from datamark.models import default_config, fit, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.testing import check_three_scenarios
from datamark.triggers import Trigger

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (shared_data_dir() / "fsdd" / "recordings").is_dir(),
                                 reason="FSDD is not staged (set DATAMARK_DATA to the shared data folder)")]


def _sample(name, n, seed):
    data = load_data(name)
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:n]))


@pytest.fixture(scope="module")
def fsdd(one_thread):
    """900 training and 200 test clips, a 3-mark BadNets key (keyed tones, secret targets), log-mel CNNs on the
    marked and the clean data."""
    train, test = _sample("fsdd:train", 900, 0), _sample("fsdd:test", 200, 1)
    marked = BadNets(seed=2, n_marks=3, rate=0.3).apply(train)
    config = default_config("logmel", epochs=4, seed=0)  # 2 epochs already convict (seeds 2-5); 8 cost twice as long
    model, spec = fit(marked.dataset, arch="logmel", config=config)
    stolen = LocalSuspect.from_model(model, spec)
    stolen.spec = spec  # for the HTTP test's checkpoint
    clean_model, clean_spec = fit(train, arch="logmel", config=config)
    clean = LocalSuspect.from_model(clean_model, clean_spec)
    clean.spec = clean_spec
    return train, test, marked, stolen, clean


def test_audio_marks_convict_the_thief_and_spare_the_innocent(fsdd):
    train, test, marked, stolen, clean = fsdd
    key = marked.key
    assert key.dataset["modality"] == "audio" and key.dataset["sample_rate"] == 8000
    assert key.trigger["name"] == "pulse" and len(key.mark_list()) == 3
    check_three_scenarios(key, stolen, clean, test)


def test_clean_label_audio_stays_in_its_amplitude_budget(fsdd, tmp_path):
    train, _, _, _, clean = fsdd
    save_checkpoint(clean.model, clean.spec, tmp_path / "b.pt")
    method = CleanLabel(seed=0, target=3, class_rate=0.2, n_marks=1, steps=5, base_model=str(tmp_path / "b.pt"))
    marked = method.apply(train)
    assert (marked.dataset.labels == train.labels).all()  # clean label
    eps = marked.key.extra["pgd_eps"]
    assert eps == pytest.approx(0.002)
    before, after = train.take(marked.rows), marked.dataset.take(marked.rows)
    trigger = Trigger.from_config(marked.key.trigger)
    outside = np.ones(before.shape[1], dtype=bool)
    outside[trigger.start:trigger.end] = False
    # PGD stays in the L-inf ball (plus one 16-bit step of quantisation) outside the pulse; the padding stays silent
    assert np.abs(after[:, outside] - before[:, outside]).max() <= eps + 1 / 32768 + 1e-7
    assert np.abs(after[:, outside] - before[:, outside]).max() > 0  # PGD did perturb
    for clip, new in zip(before, after, strict=True):  # the zero padding after a clip's end stays silent
        end = len(clip) - np.argmax(clip[::-1] != 0)
        assert not new[end:].any()


def test_audio_suspect_over_http_answers_like_the_local_model(fsdd, tmp_path):
    pytest.importorskip("fastapi")
    from datamark.suspects import HTTPSuspect
    from datamark.suspects.serve import BackgroundServer, app_from_checkpoint

    _, test, marked, stolen, _ = fsdd
    save_checkpoint(stolen.model, stolen.spec, tmp_path / "m.pt")
    with BackgroundServer(app_from_checkpoint(tmp_path / "m.pt", model_name="digits")) as server:
        with HTTPSuspect(server.url, "digits", datatype="FP32", layout="NL", scale=1.0, sample_rate=8000) as remote:
            assert remote.metadata["inputs"][0]["shape"] == [-1, 8000]
            clips = test.take(np.arange(12))
            assert np.allclose(remote.query(clips), stolen.query(clips), atol=1e-5)
        with HTTPSuspect(server.url, "digits", datatype="FP32", layout="NL", scale=1.0, sample_rate=16000) as wrong:
            with pytest.raises(SuspectError, match="8000 Hz"):
                wrong.query(test.take(np.arange(2)))
