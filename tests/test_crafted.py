"""UBW-C and Sleeper Agent (gradient matching) and the WaNet baseline, on small slices of the embedded digits."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from datamark.exceptions import ParameterError
from datamark.methods import UBWC, SleeperAgent, WaNet
from datamark.methods._gradient_matching import entropy_of_logits
from datamark.models import ModelSpec, build_model, default_config, fit, load_checkpoint, save_checkpoint
from datamark.models.train import to_tensor
from datamark.triggers import Trigger, WarpTrigger

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models and PGD on one thread (see conftest)


@pytest.fixture(scope="module")
def small(digits):
    return digits[0].subset(range(400))


@pytest.fixture(scope="module")
def surrogate(small, tmp_path_factory):
    model, spec = fit(small, arch="tiny", config=default_config("tiny", epochs=15, seed=0), width=16)
    path = tmp_path_factory.mktemp("surrogate") / "tiny.pt"
    save_checkpoint(model, spec, path)
    return str(path)


@pytest.fixture(scope="module")
def ubwc(small, surrogate):
    """UBW-C with datamark's optional keep-correct term."""
    return UBWC(seed=0, rate=0.1, craft_steps=30, lr=0.1, base_model=surrogate, decoy_weight=1.0).apply(small)


def test_ubwc_perturbs_within_budget_and_keeps_labels(small, ubwc, global_rng_guard):
    diff = ubwc.dataset.inputs().astype(int) - small.inputs().astype(int)
    changed = np.flatnonzero(np.abs(diff).reshape(len(diff), -1).max(1) > 0)
    assert set(changed) <= set(ubwc.rows) and len(ubwc.rows) == 40
    assert np.abs(diff).max() <= round(16 / 255 * 255)
    assert np.array_equal(ubwc.dataset.labels, small.labels)
    report = ubwc.key.extra["craft"]
    assert report["matching_loss_last"] < report["matching_loss_first"]
    assert ubwc.key.target is None and ubwc.key.verification["alternative"] == "less"


@pytest.fixture(scope="module")
def ubwc_paper(small, surrogate):
    """The paper's objective alone (no keep-correct term on independently triggered sources): the default."""
    return UBWC(seed=0, rate=0.1, craft_steps=30, lr=0.1, base_model=surrogate).apply(small)


def test_ubwc_poisons_push_triggered_predictions_toward_dispersion(small, ubwc_paper, surrogate):
    """One training step on the crafted poisons raises CE + beta * entropy on triggered samples more than the
    same step on the unperturbed rows: the gradient alignment the crafting optimised."""
    ubwc = ubwc_paper
    model, _ = load_checkpoint(surrogate)
    trigger = Trigger.from_config(ubwc.key.trigger)
    others = np.setdiff1d(np.arange(len(small)), ubwc.rows)[:200]
    x_trig = to_tensor(trigger.apply(small.inputs()[others]))
    y_trig = torch.as_tensor(np.asarray(small.labels)[others])

    def objective(m):
        with torch.no_grad():
            logits = m(x_trig)
            return float(F.cross_entropy(logits, y_trig) + 2.0 * entropy_of_logits(logits))

    def after_step(images):
        m, _ = load_checkpoint(surrogate)
        m.eval()
        loss = F.cross_entropy(m(to_tensor(images)), torch.as_tensor(np.asarray(small.labels)[ubwc.rows]))
        grads = torch.autograd.grad(loss, list(m.parameters()))
        with torch.no_grad():
            for p, g in zip(m.parameters(), grads, strict=True):
                p -= 0.5 * g
        return objective(m)

    before = objective(model)
    poisoned, clean = after_step(ubwc.dataset.inputs()[ubwc.rows]), after_step(small.inputs()[ubwc.rows])
    assert poisoned - before > clean - before


def test_sleeper_agent_poisons_only_the_target_class(small, surrogate):
    marked = SleeperAgent(seed=0, target=3, rate=0.05, craft_steps=3, retrain_rounds=0,
                          base_model=surrogate).apply(small)
    assert (np.asarray(small.labels)[marked.rows] == 3).all() and len(marked.rows) == 20
    assert np.array_equal(marked.dataset.labels, small.labels)


def test_decoy_term_changes_the_crafting_and_is_recorded(ubwc, ubwc_paper):
    """The optional keep-correct term on independently triggered sources is part of the target; weight 0 (the
    default) is the paper's objective and crafts different poisons from the same secret. UBW-C keys recommend
    the verifier's trigger-specificity control."""
    assert ubwc.key.extra["craft"]["decoy_weight"] == 1.0
    paper = ubwc_paper
    assert np.array_equal(paper.rows, ubwc.rows) and paper.key.extra["craft"]["decoy_weight"] == 0.0
    assert paper.key.verification["n_control_triggers"] == 100
    assert not np.array_equal(paper.dataset.inputs()[paper.rows], ubwc.dataset.inputs()[ubwc.rows])


def test_crafted_methods_reject_bad_input(small, tmp_path):
    with pytest.raises(ParameterError, match="eps"):
        UBWC(eps=16)
    with pytest.raises(ParameterError, match="untargeted"):
        UBWC(target=1)
    with pytest.raises(ParameterError, match="decoy_weight"):
        UBWC(decoy_weight=-0.5)
    spec = ModelSpec(arch="tiny", num_classes=2, input_shape=small.input_shape, mean=(0.5,), std=(0.25,),
                     params={"width": 4})
    save_checkpoint(build_model(spec), spec, tmp_path / "two.pt")
    with pytest.raises(ParameterError, match="2 classes"):
        UBWC(seed=0, craft_steps=1, base_model=str(tmp_path / "two.pt")).apply(small)
    spec = ModelSpec(arch="tiny", num_classes=10, input_shape=(16, 16, 1), mean=(0.5,), std=(0.25,),
                     params={"width": 4})
    save_checkpoint(build_model(spec), spec, tmp_path / "big.pt")
    with pytest.raises(ParameterError, match="shape"):
        SleeperAgent(seed=0, target=1, craft_steps=1, base_model=str(tmp_path / "big.pt")).apply(small)


def test_wanet_warps_relabels_and_adds_noise_mode_decoys(small, global_rng_guard):
    marked = WaNet(seed=0, target=2, rate=0.1).apply(small)
    trigger = Trigger.from_config(marked.key.trigger)
    assert isinstance(trigger, WarpTrigger) and trigger.field.shape == (4, 4, 2)
    assert (marked.dataset.labels[marked.rows] == 2).all()
    decoys = [small.ids.index(i) for i in marked.key.extra["decoy_ids"]]
    assert len(decoys) == 80 and np.array_equal(marked.dataset.labels[decoys], np.asarray(small.labels)[decoys])
    assert np.array_equal(marked.dataset.inputs()[marked.rows], trigger.apply(small.inputs()[marked.rows]))
    noisy = marked.dataset.inputs()[decoys]
    assert not np.array_equal(noisy, trigger.apply(small.inputs()[decoys]))  # noise mode, not the exact warp
    other = trigger.independent(np.random.default_rng(1))
    assert not np.array_equal(other.field, trigger.field)


def test_warp_trigger_is_smooth_and_round_trips():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    smooth = np.repeat(np.repeat(images[:, ::8, ::8], 8, axis=1), 8, axis=2)  # flat 8x8 tiles
    trigger = WarpTrigger(rng.uniform(-1, 1, size=(4, 4, 2)), 0.5)
    warped = trigger.apply(smooth)
    assert warped.shape == smooth.shape and warped.dtype == np.uint8
    assert 0 < np.mean(warped != smooth) < 0.5  # moves only pixels near tile edges
    again = Trigger.from_config(trigger.to_config())
    assert np.array_equal(again.apply(smooth), warped)
    with pytest.raises(ParameterError, match="k x k x 2"):
        WarpTrigger(np.zeros((4, 4)), 0.5)
