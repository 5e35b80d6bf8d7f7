"""Prototype of a trigger-free second line of evidence: data-use auditing after Huang, Gong and Reiter (CCS 2024,
arXiv 2407.15100), measured on CIFAR-10 with fastnet against the two thief moves that remove datamark's trigger
watermarks today (JPEG q50 query purification; distillation into a fresh network on the thief's own clean data).

The scheme: for each audited item x the owner draws a mark delta and a secret coin b, publishes x + s*delta
(s = +1 if b = 0 else -1) in the training set and keeps x - s*delta secret. Under H0 (the suspect never saw the
published copies) the coin is independent of the suspect, so "the published copy scores as more of a member than
the secret copy" is Bernoulli(1/2) per item, independently: the one-sided binomial p-value and the anytime-valid
sequential test below are exact bounds on false accusation, whatever the model, the marks or the score.

Marks (``--schemes``): ``iid`` a random +-eps sign per pixel and channel (the brief's closest faithful version);
``lowfreq`` a random +-eps sign per cell of a 4 x 4 grid per channel, bilinearly upsampled (smooth: meant to keep
through JPEG and the random crops of training); ``crafted`` the paper's idea on an owner-side surrogate (fastnet
trained on cifar10:test, disjoint from every training row): PGD on delta to push the surrogate's features of
x + delta and x - delta apart (L-inf eps, random shifts and flips for transfer).

Scores (larger = more of a member), each read off the probabilities a black-box API returns:
``logp`` log-probability of the true label (loss), ``margin`` log p_y - log max_{j != y} p_j (the LiRA-style logit
scale), and ``aug_logp`` / ``aug_margin`` the same averaged over the 18 views of training (shifts of -4, 0, 4 px in
each direction with reflect padding, x flip). The contrastive score of an item is score(published) - score(secret).

Everything trains under ``flock /tmp/datamark-cpu.lock``; checkpoints in ``runs/audit_prototype/``; results in
``benchmarks/results/audit_prototype.{json,md}``. Run: ``flock /tmp/datamark-cpu.lock python
benchmarks/audit_prototype.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import special, stats
from torch.nn import functional as F

from datamark import __version__
from datamark._device import device_name
from datamark.data import from_numpy, load_data
from datamark.modalities.image import to_tensor
from datamark.models import build_model, default_config, fit, load_checkpoint, save_checkpoint
from datamark.models.features import features_of
from datamark.models.train import _augment, _lr_at

RESULTS = Path(__file__).resolve().parent / "results"
SCORES = ("logp", "margin", "aug_logp", "aug_margin")
log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731


# ----------------------------------------------------------------------------------------------------- marks
def make_marks(images: np.ndarray, scheme: str, eps: int, rng: np.random.Generator, surrogate=None) -> np.ndarray:
    """Signed int16 marks (pixel units, |delta| <= eps) for the uint8 NHWC ``images``."""
    n, h, w, c = images.shape
    if scheme == "iid":
        return (rng.choice([-1, 1], size=images.shape) * eps).astype(np.int16)
    if scheme == "lowfreq":
        grid = torch.from_numpy(rng.choice([-1.0, 1.0], size=(n, c, 4, 4)).astype(np.float32))
        smooth = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True)
        return torch.round(smooth * eps).permute(0, 2, 3, 1).numpy().astype(np.int16)
    if scheme == "crafted":
        return crafted_marks(images, surrogate, eps, rng)
    raise ValueError(f"unknown scheme {scheme!r}")


def crafted_marks(images: np.ndarray, surrogate, eps: int, rng: np.random.Generator, steps: int = 20) -> np.ndarray:
    """PGD on delta (L-inf ``eps`` pixels) maximising ||phi(x + delta) - phi(x - delta)||^2 on the surrogate's
    features, each step under a random shift/flip so that the direction transfers to the thief's training."""
    surrogate.eval()
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    config = default_config("fastnet", crop_padding=4)
    e = eps / 255.0
    out = []
    for start in range(0, len(images), 250):
        x = to_tensor(images[start:start + 250])
        delta = (torch.from_numpy(rng.choice([-1.0, 1.0], size=tuple(x.shape)).astype(np.float32)) * e)
        for _ in range(steps):
            delta.requires_grad_(True)
            both = torch.cat([(x + delta).clamp(0, 1), (x - delta).clamp(0, 1)])
            both = _augment(both, config, gen)  # the same shift for the pair is not needed: features are pooled
            f = features_of(surrogate, both)
            loss = (f[:len(x)] - f[len(x):]).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + (e / 4) * grad.sign()).clamp(-e, e)
        out.append(torch.round(delta * 255).permute(0, 2, 3, 1).numpy().astype(np.int16))
    return np.concatenate(out)


def copies(images: np.ndarray, marks: np.ndarray, coins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(published, secret): x + s*delta and x - s*delta with s = +1 for coin 0 and -1 for coin 1, clipped."""
    s = (1 - 2 * coins.astype(np.int16)).reshape(-1, 1, 1, 1)
    x = images.astype(np.int16)
    return (np.clip(x + s * marks, 0, 255).astype(np.uint8), np.clip(x - s * marks, 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------------------------------- scores
def jpeg(images: np.ndarray, quality: int = 50) -> np.ndarray:
    """Each image through a PIL JPEG round trip (the thief's API compressing every query)."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def views(images: np.ndarray) -> list[np.ndarray]:
    """The 18 views of training: shifts of -4, 0, 4 px (reflect padding) in each direction, with and without flip."""
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    out = []
    for dy in (0, 4, 8):
        for dx in (0, 4, 8):
            v = np.ascontiguousarray(padded[:, dy:dy + h, dx:dx + w])
            out += [v, np.ascontiguousarray(v[:, :, ::-1])]
    return out


def probs_of(model, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([torch.softmax(model(to_tensor(images[i:i + batch])).float(), 1).double().numpy()
                               for i in range(0, len(images), batch)])


def scores(model, images: np.ndarray, labels: np.ndarray, purify: bool) -> dict[str, np.ndarray]:
    """Every membership score of each image (the API's probabilities; ``purify``: each query JPEG q50 first)."""
    def one(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.clip(p, 1e-12, 1.0)
        py = p[np.arange(len(p)), labels]
        other = p.copy()
        other[np.arange(len(p)), labels] = 0
        return np.log(py), np.log(py) - np.log(other.max(1))
    per_view = [one(probs_of(model, jpeg(v) if purify else v)) for v in views(images)]
    logp, margin = one(probs_of(model, jpeg(images) if purify else images))
    return {"logp": logp, "margin": margin, "aug_logp": np.mean([v[0] for v in per_view], 0),
            "aug_margin": np.mean([v[1] for v in per_view], 0)}


# ----------------------------------------------------------------------------------------------------- tests
def sequential_stop(wins: np.ndarray, alpha: float) -> int | None:
    """Items needed before an anytime-valid test rejects H0: theta = 1/2 at level ``alpha``, or None.

    The e-process is the likelihood ratio mixed over theta ~ Uniform(1/2, 1): M_n = 2^(n+1) * integral over
    [1/2, 1] of theta^k (1 - theta)^(n - k); under H0 it is a nonnegative martingale with mean 1, so by Ville's
    inequality P(sup_n M_n >= 1/alpha) <= alpha: the owner may stop at the first crossing, whatever the order.
    """
    k = np.cumsum(wins)
    n = np.arange(1, len(wins) + 1)
    log_m = ((n + 1) * math.log(2) + special.betaln(k + 1, n - k + 1)
             + np.log(np.maximum(special.betaincc(k + 1, n - k + 1, 0.5), 1e-300)))
    hit = np.nonzero(log_m >= math.log(1 / alpha))[0]
    return int(hit[0]) + 1 if len(hit) else None


def audit(model, published: np.ndarray, secret: np.ndarray, labels: np.ndarray, purify: bool) -> dict[str, Any]:
    pub, sec = scores(model, published, labels, purify), scores(model, secret, labels, purify)
    out: dict[str, Any] = {}
    for name in SCORES:
        diff = pub[name] - sec[name]
        wins = diff > 0  # ties count against the owner
        row = {}
        for m in sorted({len(wins), 250}):
            w = wins[:m]
            row[str(m)] = {"wins": int(w.sum()), "n": m, "win_rate": float(w.mean()),
                           "p": float(stats.binomtest(int(w.sum()), m, 0.5, alternative="greater").pvalue),
                           "seq_n_at_0.005": sequential_stop(w, 0.005), "seq_n_at_0.01": sequential_stop(w, 0.01)}
        out[name] = row
    return out


# ----------------------------------------------------------------------------------------------------- models
def trained(path: Path, records, seed: int, threads_note: dict, widths: list[int] | None = None) -> tuple[Any, Any]:
    """The checkpoint at ``path``, or a fastnet (stage ``widths`` if given) trained on ``records`` and saved."""
    if path.exists():
        return load_checkpoint(path)
    start = time.perf_counter()
    model, spec = fit(records, arch="fastnet", config=default_config("fastnet", seed=seed),
                      **({"widths": tuple(widths)} if widths else {}))
    seconds = time.perf_counter() - start
    save_checkpoint(model, spec, path, overwrite=True, extra={"train_s": seconds})
    threads_note[path.stem] = seconds
    log(f"  trained {path.stem} on {len(records)} rows in {seconds:.0f} s")
    return model, spec


def distilled(path: Path, teacher, spec, images: np.ndarray, seed: int, epochs: int, temperature: float,
              times: dict) -> Any:
    """A fresh fastnet trained only on the teacher's soft outputs (KL at ``temperature``) on ``images`` (the
    thief's own clean data), with the training augmentation; the teacher sees the same augmented batch."""
    if path.exists():
        return load_checkpoint(path)[0]
    start = time.perf_counter()
    config = default_config("fastnet", seed=seed, epochs=epochs)
    student = build_model(spec, seed=seed + 1000).train()
    teacher.eval()
    decay = [p for p in student.parameters() if p.ndim > 1]
    no_decay = [p for p in student.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(seed)
    data = to_tensor(images)
    n, step = len(data), 0
    total = math.ceil(n / config.batch_size) * epochs
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, config.batch_size):
            x = _augment(data[order[s:s + config.batch_size]], config, gen)
            for g in opt.param_groups:
                g["lr"] = _lr_at(config, step, total)
            with torch.no_grad():  # the API's probabilities: log p = logits + const, so log p / T is enough
                soft = torch.log_softmax(teacher(x).float(), 1)
            loss = F.kl_div(torch.log_softmax(student(x).float() / temperature, 1),
                            torch.log_softmax(soft / temperature, 1), log_target=True,
                            reduction="batchmean") * temperature ** 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    student.eval()
    seconds = time.perf_counter() - start
    save_checkpoint(student, spec, path, overwrite=True, extra={"train_s": seconds})
    times[path.stem] = seconds
    log(f"  distilled {path.stem} on {n} rows, {epochs} epochs, in {seconds:.0f} s")
    return student


def accuracy(model, images: np.ndarray, labels: np.ndarray, purify: bool = False) -> float:
    return float((probs_of(model, jpeg(images) if purify else images).argmax(1) == labels).mean())


# ----------------------------------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--schemes", nargs="+", default=["iid", "lowfreq"], choices=["iid", "lowfreq", "crafted"])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--marks", nargs="+", type=int, default=[1000], help="Audited items per stolen model.")
    p.add_argument("--eps", type=int, default=8, help="L-inf size of delta in pixel units (8 = 8/255).")
    p.add_argument("--distill-rows", type=int, default=5000)
    p.add_argument("--distill-epochs", type=int, default=8)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--surrogate-rows", type=int, default=10_000, help="cifar10:test rows of the crafted surrogate.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("runs/audit_prototype"))
    p.add_argument("--widths", type=int, nargs=3, metavar=("W1", "W2", "W3"),
                   help="fastnet stage widths (default: 64 128 256); 32 64 128 trains ~2.7x faster on a CPU")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, test = load_data("cifar10:train"), load_data("cifar10:test")
    perm = np.random.default_rng(args.seed).permutation(len(train))
    rows, thief_rows = np.sort(perm[:args.rows]), np.sort(perm[args.rows:args.rows + args.distill_rows])
    base = train.subset(rows)
    images, labels, names = base.inputs(), np.asarray(base.labels), list(base.class_names)
    thief_images = train.subset(thief_rows).inputs()
    test_x, test_y = test.inputs(), np.asarray(test.labels)
    times: dict[str, float] = {}
    cache = args.work / "results.json"
    res: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}

    accuracies: dict[int, dict[str, float]] = {}  # per model object: the control models serve every scheme

    def evaluate(tag: str, model, pub, sec, y, audited: bool = True) -> None:
        if tag in res:
            return
        if id(model) not in accuracies:
            accuracies[id(model)] = {"ba": accuracy(model, test_x, test_y),
                                     "ba_jpeg50": accuracy(model, test_x, test_y, purify=True)}
        entry: dict[str, Any] = dict(accuracies[id(model)])
        if audited:
            entry["plain"] = audit(model, pub, sec, y, purify=False)
            entry["jpeg50"] = audit(model, pub, sec, y, purify=True)
        res[tag] = entry
        cache.write_text(json.dumps(res, indent=1))
        publish(args, argv, len(base), len(thief_rows), times, t0, res)  # partial results survive an interruption
        best = max(SCORES, key=lambda s: entry["plain"][s][str(len(y))]["win_rate"]) if audited else None
        log(f"{tag}: BA {entry['ba']:.3f} (JPEG {entry['ba_jpeg50']:.3f})" + (
            f"; best plain score {best}: win {entry['plain'][best][str(len(y))]['win_rate']:.3f} "
            f"p {entry['plain'][best][str(len(y))]['p']:.2g}; JPEG win "
            f"{entry['jpeg50'][best][str(len(y))]['win_rate']:.3f} p {entry['jpeg50'][best][str(len(y))]['p']:.2g}"
            if audited else ""))

    clean, spec = trained(args.work / "clean.pt", base, args.seed, times, args.widths)
    clean_student = distilled(args.work / "clean-student.pt", clean, spec, thief_images, args.seed,
                              args.distill_epochs, args.temperature, times)
    surrogate = None
    if "crafted" in args.schemes:  # the owner's surrogate: trained on cifar10:test, disjoint from all training rows
        surrogate, _ = trained(args.work / "surrogate-test.pt", test.subset(np.arange(args.surrogate_rows)),
                               args.seed + 7, times, args.widths)
    for scheme in args.schemes:
        for m in args.marks:
            rng = np.random.default_rng([args.seed, m, ["iid", "lowfreq", "crafted"].index(scheme)])
            marked = np.sort(rng.choice(len(base), size=m, replace=False))
            order = rng.permutation(m)  # the audit order: the key's, so the first 250 are a random 250
            marked = marked[order]
            coins = rng.integers(0, 2, size=m)
            marks = make_marks(images[marked], scheme, args.eps, rng, surrogate)
            pub, sec = copies(images[marked], marks, coins)
            y = labels[marked]
            published = images.copy()
            published[marked] = pub
            tag = f"{scheme}-m{m}"
            stolen, _ = trained(args.work / f"{tag}-stolen.pt", from_numpy(published, labels, names), args.seed, times,
                                args.widths)
            student = distilled(args.work / f"{tag}-student.pt", stolen, spec, thief_images, args.seed,
                                args.distill_epochs, args.temperature, times)
            evaluate(f"{tag}/stolen", stolen, pub, sec, y)
            evaluate(f"{tag}/student", student, pub, sec, y)
            evaluate(f"{tag}/clean", clean, pub, sec, y)  # H0: the same rows, never marked
            evaluate(f"{tag}/clean-student", clean_student, pub, sec, y)  # H0 after distillation
    publish(args, argv, len(base), len(thief_rows), times, t0, res)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


def publish(args: argparse.Namespace, argv: list[str] | None, train_rows: int, thief_rows: int,
            times: dict[str, float], t0: float, res: dict[str, Any]) -> None:
    """Write benchmarks/results/audit_prototype.{json,md} from what is measured so far."""
    git = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
    widths = f" (stage widths {', '.join(map(str, args.widths))})" if args.widths else ""
    out = {"title": f"Data-use auditing prototype (Huang, Gong & Reiter, CCS 2024) on CIFAR-10 / fastnet{widths}",
           "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
           "environment": f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch "
                          f"threads, torch {torch.__version__}, datamark {__version__} (git {git})",
           "args": {k: str(v) for k, v in vars(args).items()}, "train_rows": train_rows,
           "thief_rows": thief_rows, "train_seconds_this_run": times, "total_s": time.perf_counter() - t0,
           "results": res}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit_prototype.json").write_text(json.dumps(out, indent=1))
    (RESULTS / "audit_prototype.md").write_text(markdown(out))


def markdown(out: dict[str, Any]) -> str:
    lines = [f"# {out['title']}", "", f"Command: `{out['command']}`", "", f"Machine: {out['environment']}", "",
             f"Training rows {out['train_rows']} (seeded sample of cifar10:train); thief's distillation rows "
             f"{out['thief_rows']} other training rows. Win = contrastive score > 0 (published copy scores higher; "
             "ties lose). p: exact one-sided binomial (H0 win rate 1/2). seq n: items an anytime-valid sequential "
             "test (uniform mixture over theta in [1/2, 1], Ville) needs to reject at alpha/2 = 0.005 ('-': never).",
             "", "| model | BA | BA JPEG50 | query | score | m | win rate | p | seq n @0.005 |", "|" + "---|" * 9]
    for tag, e in out["results"].items():
        for query in ("plain", "jpeg50"):
            for score in SCORES:
                for m, r in e.get(query, {}).get(score, {}).items():
                    lines.append(f"| {tag} | {e['ba']:.3f} | {e['ba_jpeg50']:.3f} | {query} | {score} | {m} | "
                                 f"{r['win_rate']:.3f} | {r['p']:.2g} | {r['seq_n_at_0.005'] or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
