"""Clean-label methods (CleanLabel, LabelConsistent): PGD, row choice, errors, WDR end to end, detectors, preview."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from datamark import CleanLabel, Key, LabelConsistent, from_numpy
from datamark.cli import app
from datamark.evaluate.detectors import (
    activation_clustering,
    autoencoder_outliers,
    confidence_outliers,
    recall_precision,
    spectral_signatures,
)
from datamark.evaluate.metrics import accuracy_drop, trigger_success_rate, watermark_detection_rate
from datamark.evaluate.preview import watermark_stages
from datamark.exceptions import ParameterError
from datamark.methods._pgd import pgd_perturb
from datamark.models import default_config, fit, load_checkpoint, save_checkpoint
from datamark.models.train import to_tensor
from datamark.testing import train_tiny
from datamark.testing.servers import save_tiny_checkpoint
from datamark.triggers import CornerTrigger, Trigger, make_pattern

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models and PGD on one thread (see conftest)


@pytest.fixture(scope="module")
def base(tiny_clean, tmp_path_factory):
    """A tiny model trained on all digits (the shared ``tiny_clean``), saved as a checkpoint: (model read back from
    the checkpoint, checkpoint path)."""
    path = tmp_path_factory.mktemp("base") / "tiny.pt"
    save_tiny_checkpoint(tiny_clean.model, path)
    return load_checkpoint(path)[0], str(path)


def test_pgd_stays_in_the_ball_and_raises_the_loss(digits, base, global_rng_guard):
    model, _ = base
    images, labels = digits[0].inputs()[:64], digits[0].labels[:64]
    adv, stats = pgd_perturb(model, images, labels, eps=16 / 255, step_size=4 / 255, steps=10, seed=1, batch_size=32)
    assert adv.dtype == np.uint8 and adv.shape == images.shape and stats.images == 64
    assert np.abs(adv.astype(int) - images).max() <= 16 and adv.min() >= 0 and adv.max() <= 255
    with torch.no_grad():
        before = F.cross_entropy(model(to_tensor(images)), torch.as_tensor(labels)).item()
        after = F.cross_entropy(model(to_tensor(adv)), torch.as_tensor(labels)).item()
    assert after > before + 0.5
    again, _ = pgd_perturb(model, images, labels, eps=16 / 255, step_size=4 / 255, steps=10, seed=1, batch_size=32)
    assert np.array_equal(adv, again)  # seeded random start
    assert all(p.requires_grad for p in model.parameters()) and not model.training  # flags and mode restored


@pytest.mark.parametrize("param", ["eps", "step_size"])
def test_pixel_budgets_outside_0_1_are_refused(param):
    with pytest.raises(ParameterError, match=f"'{param}' parameter of CleanLabel must be in \\[0, 1\\].*got 16"):
        CleanLabel(**{param: 16})


def test_empty_target_class_small_class_rate_and_wrong_base_model_are_refused(digits, base, tmp_path):
    _, ckpt = base
    train = digits[0]
    no_threes = train.subset(np.flatnonzero(train.labels != 3))
    with pytest.raises(ParameterError, match="target class has no rows"):
        CleanLabel(seed=0, target=3, base_model=ckpt).apply(no_threes)
    with pytest.raises(ParameterError, match="'class_rate'.*no rows"):
        CleanLabel(seed=0, target=3, class_rate=0.001, base_model=ckpt).apply(train)
    three = from_numpy(train.inputs()[:300], train.labels[:300] % 3, ["a", "b", "c"])
    model, spec = fit(three, arch="tiny", config=default_config("tiny", epochs=1))
    save_checkpoint(model, spec, tmp_path / "three.pt")
    with pytest.raises(ParameterError, match="3 classes but the data"):
        CleanLabel(seed=0, target=1, base_model=str(tmp_path / "three.pt")).apply(train)


@pytest.mark.parametrize("cls", [CleanLabel, LabelConsistent])
def test_only_target_class_rows_change_and_labels_stay(cls, digits, base):
    _, ckpt = base
    train = digits[0]
    marked = cls(seed=2, target=6, class_rate=0.2, base_model=ckpt).apply(train)
    n_class = int((train.labels == 6).sum())
    assert len(marked.rows) == round(0.2 * n_class) and (train.labels[marked.rows] == 6).all()
    assert np.array_equal(marked.dataset.labels, train.labels)
    changed = np.flatnonzero((marked.dataset.inputs() != train.inputs()).any(axis=(1, 2, 3)))
    assert set(changed) <= set(marked.rows)
    extra = marked.key.extra
    assert extra["class_rate_relative_to"].startswith("the target class") and extra["target_class_rows"] == n_class
    assert extra["base_model"] == f"checkpoint:{ckpt}" and extra["pgd_images_per_s"] > 0


def test_label_consistent_defaults_and_flip_robust_trigger(digits, base):
    method = LabelConsistent()
    assert method.eps == pytest.approx(8 / 255) and method.verification_defaults()["test"] == "paired-t"
    assert CleanLabel().verification_defaults() == {"score": "target-probability", "test": "wilcoxon",
                                                    "alternative": "greater", "margin": 0.1, "n_probe": 200,
                                                    "alpha": 0.05}
    trigger = CornerTrigger.from_pattern(make_pattern("checkerboard", (3, 3, 1), np.random.default_rng(0)), 64 / 255)
    blank = np.full((2, 8, 8, 1), 128, np.uint8)
    stamped = trigger.apply(blank)
    assert np.array_equal(stamped[:, :, ::-1], stamped)  # a horizontal flip leaves the trigger in place
    assert np.abs(stamped.astype(int) - 128).max() == 64
    assert Trigger.from_config(trigger.to_config()).apply(blank).tobytes() == stamped.tobytes()


def test_wdr_is_zero_on_a_clean_model_and_high_on_a_watermarked_one(digits, base, tiny_clean):
    """At 8x8-digit scale only a strong setting is reliable: the blend (mosaic) trigger on the *whole* target class
    (measured: WDR 1.0 for 4 of 4 seeds/targets; with class_rate 0.5 it was 0-4 %). The clean model must never
    be accused, whatever the setting."""
    _, ckpt = base
    train, test = digits
    marked = CleanLabel(seed=0, target=3, class_rate=1.0, trigger_kind="blend", base_model=ckpt).apply(train)
    trigger = Trigger.from_config(marked.key.trigger)
    stolen, clean = train_tiny(marked.dataset, seed=0, epochs=15), tiny_clean  # the same clean model as it was
    assert watermark_detection_rate(clean, test, trigger, 3, draws=30) == 0.0
    assert watermark_detection_rate(stolen, test, trigger, 3, draws=30) >= 0.9
    assert trigger_success_rate(stolen, test, trigger, 3) > trigger_success_rate(clean, test, trigger, 3)
    assert accuracy_drop(0.9, 0.88) == pytest.approx(2.0)


def test_detectors_find_planted_outliers():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    features = rng.normal(size=(400, 16))
    planted = np.arange(180, 200)  # 10 % of class 0, shifted far along one direction
    features[planted, 0] += 12.0
    ss = spectral_signatures(features, labels, poison_fraction=0.1)
    assert recall_precision(ss.flagged, planted)["recall"] == 1.0 and len(ss.flagged) == 60
    ac = activation_clustering(features, labels, seed=0)
    assert recall_precision(ac.flagged, planted) == {"recall": 1.0, "precision": 1.0}
    probs = np.full(400, 0.9)
    probs[planted[:4]] = 0.01
    conf = confidence_outliers(probs, fraction=0.01)
    assert recall_precision(conf.flagged, planted) == {"recall": 0.2, "precision": 1.0}
    images = np.full((400, 8, 8, 1), 100, np.uint8)
    images[planted[:4]] = rng.integers(0, 256, size=(4, 8, 8, 1), dtype=np.uint8)
    ae = autoencoder_outliers(images, fraction=0.01, epochs=3, seed=0)
    assert recall_precision(ae.flagged, planted[:4])["recall"] == 1.0


def test_preview_png_is_written_by_library_and_cli(digits, base, tmp_path):
    _, ckpt = base
    train = digits[0].subset(range(400))
    marked = CleanLabel(seed=1, target=2, class_rate=0.3, base_model=ckpt).apply(train)
    assert watermark_stages(marked.key, train, marked.dataset, tmp_path / "p.png", n=4) == 4
    assert (tmp_path / "p.png").stat().st_size > 1000
    train.save(tmp_path / "orig.npz")
    runner = CliRunner()
    result = runner.invoke(app, ["protect", str(tmp_path / "orig.npz"), "--out", str(tmp_path / "wm.npz"), "--key",
                                 str(tmp_path / "k.json"), "--method", "clean-label", "--class-rate", "0.3",
                                 "--base-model", ckpt, "--seed", "1", "--target", "2"])
    assert result.exit_code == 0, result.output
    assert Key.load(tmp_path / "k.json").method["params"]["class_rate"] == 0.3
    result = runner.invoke(app, ["preview", "--key", str(tmp_path / "k.json"), "--watermarked",
                                 str(tmp_path / "wm.npz"), "--original", str(tmp_path / "orig.npz"), "--out",
                                 str(tmp_path / "cli.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli.png").stat().st_size > 1000


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path, load_benchmark):
    """The CIFAR-10 benchmark script end to end on a tiny subset (about 30 s; skipped without the data). The
    transfer part with one architecture (VGG-11, the cheapest to train): its loops, cache and table are the same
    code for one or two, and two (FastNet and VGG-11) cost 15 s more."""
    from datamark.data import shared_data_dir

    if not (shared_data_dir() / "cifar10").exists():
        pytest.skip("CIFAR-10 is not in the shared data folder")
    module = load_benchmark("cleanlabel_cifar10")
    assert module.main(["--smoke", "--transfer-archs", "vgg11", "--work", str(tmp_path / "work"), "--results",
                        str(tmp_path)]) == 0
    text = (tmp_path / "cleanlabel_cifar10_smoke.md").read_text()
    assert "Transferability" in text and "| vgg11 |" in text and "SMOKE RUN" in text
    assert "## Main (full setting" in text and "## Rate sweep" in text  # the three parts ran


def test_benchmark_transfer_cells_pick_the_matrix_cells(load_benchmark):
    """``--transfer-cells A:B`` measures only those cells (e.g. the ones another machine left out); a cell that is
    not two of the matrix's architectures is refused in one line before anything loads."""
    module = load_benchmark("cleanlabel_cifar10")
    every = module.parse(["--transfer-archs", "fastnet", "resnet20"])
    assert module.transfer_cells(every) == [("fastnet", "fastnet"), ("fastnet", "resnet20"),
                                            ("resnet20", "fastnet"), ("resnet20", "resnet20")]
    picked = module.parse(["--transfer-cells", "resnet20:fastnet", "fastnet:resnet20"])
    assert module.transfer_cells(picked) == [("resnet20", "fastnet"), ("fastnet", "resnet20")]
    for bad in ("fastnet", "fastnet:resnet18", ":vgg11"):
        with pytest.raises(SystemExit, match="PERTURB:SUSPECT"):
            module.parse(["--transfer-cells", bad])


def _transfer_cell(a: str, b: str, tsr: float, **setting) -> dict:
    return {"perturb_arch": a, "suspect_arch": b, "tsr": tsr, "wdr": 1.0, "ba": 0.88, "class_rate": 0.1, "target": 5,
            "clean_model": {"tsr": 0.02, "wdr": 0.0}, **setting}


def test_benchmark_merge_composes_one_matrix_and_refuses_another_setting(load_benchmark, tmp_path):
    """``--merge`` builds one matrix from cells that several runs (machines) measured, trains nothing, says where
    each came from, and refuses a cell of another setting or the same cell twice, writing nothing."""
    import json

    module = load_benchmark("cleanlabel_cifar10")
    setting = {"rows": 50000, "epochs": 15, "seed": 0, "class_rate": 0.1, "target": 5, "decoy_rate": 0.0}
    old_partial = tmp_path / "gpu.transfer-partial.json"  # an older partial file: no setting recorded
    old_partial.write_text(json.dumps([_transfer_cell("fastnet", "fastnet", 0.567)]))
    run = tmp_path / "cpu.json"  # a run's results: the setting recorded once, the machine too
    run.write_text(json.dumps({
        "settings": {"transfer_rows": 50000, "train_rows": None, "transfer_epochs": 15, "seed": 0, "main_rate": 0.1,
                     "target": 5, "decoy_rate": 0.0},
        "environment": {"device": "cpu", "cpu_threads": 2, "platform": "Linux-x", "torch": "2.13.0"},
        "transfer": [_transfer_cell("fastnet", "resnet20", 0.692)]}))
    new_partial = tmp_path / "new.transfer-partial.json"  # each cell records its setting
    new_partial.write_text(json.dumps([_transfer_cell("resnet20", "resnet20", 0.5, **setting)]))
    flags = ["--transfer-rows", "50000", "--transfer-epochs", "15", "--results", str(tmp_path / "out"),
             "--name", "matrix"]
    assert module.main(["--merge", str(old_partial), str(run), str(new_partial), *flags]) == 0
    text = (tmp_path / "out" / "matrix.md").read_text()
    assert "## 3 of 4 cells" in text
    assert "| fastnet | 56.7 / 100.0 (2.0 / 0.0), BA 88.0 | 69.2 / 100.0 (2.0 / 0.0), BA 88.0 |" in text
    assert "| resnet20 | – | 50.0 / 100.0 (2.0 / 0.0), BA 88.0 |" in text
    assert "`gpu.transfer-partial.json` (machine not recorded in a partial file; setting not recorded" in text
    assert "`cpu.json` (cpu, 2 threads, Linux-x, torch 2.13.0)" in text
    assert "`new.transfer-partial.json` (machine not recorded in a partial file):" in text  # its cells say the setting
    merged = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert [r["source"] for r in merged["transfer"]] == ["gpu.transfer-partial.json", "cpu.json",
                                                         "new.transfer-partial.json"]
    assert [r["setting_stated"] for r in merged["transfer"]] == [True, False, False]

    other = tmp_path / "other.transfer-partial.json"
    other.write_text(json.dumps([_transfer_cell("vgg11", "vgg11", 0.5, **(setting | {"epochs": 4}))]))
    junk = tmp_path / "junk.json"  # JSON, but not this script's cells
    junk.write_text(json.dumps({"rows": [1, 2]}))
    refusals = {"another setting": [str(run), str(other)], "in two sources": [str(run), str(run)],
                "no transfer cells": [str(junk)]}
    for words, files in refusals.items():
        with pytest.raises(SystemExit, match=words):
            module.main(["--merge", *files, *flags[:-1], "refused"])
        assert not (tmp_path / "out" / "refused.md").exists()
