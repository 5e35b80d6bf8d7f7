"""The HTML report's figures, each returned as PNG bytes (Agg backend) so the page can inline it as a data URI.

Every figure draws numbers a result or its evidence holds; none queries a model. Where a drawing already exists
(the experiment's p-value bars, the trigger and watermark previews) the report reuses it through
:func:`rendered` rather than drawing it again.
"""

from __future__ import annotations

import base64
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data.records import Records
from ..key import Key
from .plots import _figure, figure_png, stages_grid
from .preview import watermark_stages

_N_EXAMPLES = 6
_CAP = 50.0  # -log10 p is drawn up to this (the experiment plot's cap); larger values are marked, not hidden


def data_uri(png: bytes) -> str:
    """``png`` as a ``data:image/png;base64`` URI: the page embeds every picture, so it makes no request."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def rendered(draw: Callable[[Path], None], suffix: str = ".png") -> bytes:
    """The bytes an existing path-writing drawer (``draw(path)``) produces, written to a private temporary folder.

    Lets the report reuse :func:`datamark.evaluate.plots.pvalue_plot`, ``stages_grid`` and the modalities'
    preview writers unchanged; the temporary folder is ours and removed with what it holds.
    """
    with tempfile.TemporaryDirectory(prefix="datamark-report-") as folder:
        path = Path(folder) / f"figure{suffix}"
        draw(path)
        return path.read_bytes()


def pvalue_figure(tests: Sequence[tuple[str, float]], alpha: float) -> bytes:
    """-log10 p of each named test (``(label, log10_p)``) beside -log10 alpha: a bar past the line rejects H0."""
    fig, axes = _figure(1, 1, 1.0)
    fig.set_size_inches(6.0, 0.9 + 0.45 * len(tests))
    ax = axes[0][0]
    heights = [min(-log10_p, _CAP) for _, log10_p in tests]
    threshold = -math.log10(alpha)
    colors = ["#b2182b" if h > threshold else "#4d4d4d" for h in heights]
    y = np.arange(len(tests))
    ax.barh(y, heights, color=colors, height=0.55)
    ax.axvline(threshold, color="#2166ac", linestyle="--", linewidth=1.2, label=f"alpha = {alpha:g}")
    for i, (_, log10_p) in enumerate(tests):
        capped = " (capped)" if -log10_p > _CAP else ""
        ax.text(heights[i], i, f"  p = {10 ** log10_p:.3g}{capped}", va="center", fontsize=8)
    ax.set_yticks(y, [label for label, _ in tests], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(heights), threshold) * 1.45 + 0.5)
    ax.set_xlabel("-log10 p (log scale of p; right of the dashed line: H0 rejected)")
    ax.legend(fontsize=7, loc="lower right")
    return figure_png(fig)


def score_figure(treated: np.ndarray, control: np.ndarray, *, score: str, margin: float,
                 alternative: str) -> bytes:
    """Per-probe scores without (clean) and with the trigger, and their paired differences with tau drawn in."""
    fig, axes = _figure(1, 2, 3.6)
    fig.set_size_inches(8.4, 3.2)
    left, right = axes[0]
    bins = np.linspace(min(control.min(), treated.min()), max(control.max(), treated.max()) + 1e-9, 21)
    left.hist(control, bins=bins, alpha=0.6, label=f"clean (n = {len(control)})", color="#4d4d4d")
    left.hist(treated, bins=bins, alpha=0.6, label="with the trigger", color="#b2182b")
    left.set_xlabel(score, fontsize=8)
    left.set_ylabel("probes")
    left.legend(fontsize=7)
    diff = treated - control
    right.hist(diff, bins=21, color="#762a83", alpha=0.8)
    bound = margin if alternative == "greater" else -margin
    right.axvline(bound, color="#2166ac", linestyle="--", label=f"H0 bound {bound:+g}")
    right.axvline(float(diff.mean()), color="#b2182b", label=f"mean {diff.mean():+.3f}")
    right.set_xlabel("triggered - clean, per probe", fontsize=8)
    right.legend(fontsize=7)
    return figure_png(fig)


def rank_figure(stronger: int, k: int, alpha: float, control_effects: Sequence[float] | None = None,
                key_effect: float | None = None) -> bytes:
    """The specificity control: where the key's trigger ranks among ``k`` random triggers of its kind.

    With the controls' effects (replayed from evidence) it draws their histogram and the key's effect; from a
    result alone it draws the rank (1 = strongest) that the exact rank test turns into p = rank / (k + 1).
    """
    fig, axes = _figure(1, 1, 1.0)
    fig.set_size_inches(6.0, 2.6)
    ax = axes[0][0]
    if control_effects is not None and key_effect is not None:
        ax.hist(control_effects, bins=20, color="#4d4d4d", alpha=0.8, label=f"{k} independent triggers")
        ax.axvline(key_effect, color="#b2182b", linewidth=2, label="the key's trigger")
        ax.set_xlabel("effect of a trigger on the kept probes (larger = more watermark-like)")
        ax.set_ylabel("triggers")
    else:
        rank = stronger + 1
        critical = math.floor(alpha * (k + 1))  # ranks 1..critical give p <= alpha
        ax.barh([0], [k + 1], color="#e0e0e0", height=0.5)
        if critical >= 1:
            ax.barh([0], [critical], color="#fddbc7", height=0.5, label=f"ranks with p <= alpha = {alpha:g}")
        ax.plot([rank - 0.5], [0], marker="v", markersize=14, color="#b2182b", linestyle="none",
                label=f"the key's trigger: rank {rank} of {k + 1}")
        ax.set_xlim(0, k + 1)
        ax.set_yticks([])
        ax.set_xlabel("rank among the key's and the control triggers (1 = moved the suspect most)")
    ax.legend(fontsize=7)
    return figure_png(fig)


def evalue_figure(log10_e: np.ndarray, alpha: float, *, unit: str) -> bytes:
    """The sequential test's log10 e-value after each observation, with the rejection line log10(1/alpha)."""
    fig, axes = _figure(1, 1, 1.0)
    fig.set_size_inches(6.0, 3.0)
    ax = axes[0][0]
    steps = np.arange(1, len(log10_e) + 1)
    ax.plot(steps, log10_e, color="#762a83", marker="." if len(steps) <= 40 else None)
    ax.axhline(-math.log10(alpha), color="#2166ac", linestyle="--", label=f"reject H0: e >= 1/alpha = {1 / alpha:g}")
    ax.axhline(0.0, color="#999999", linewidth=0.8)
    ax.set_xlabel(unit)
    ax.set_ylabel("log10 e-value")
    ax.legend(fontsize=7)
    return figure_png(fig)


def image(png: bytes, caption: str) -> dict[str, str]:
    """A picture for the page: its data URI and caption."""
    return {"kind": "image", "src": data_uri(png), "caption": caption}


def _preview(data: Records, clean: np.ndarray, changed: np.ndarray, titles: list[str], caption: str,
             stages: tuple[str, str]) -> dict[str, str]:
    """A picture of ``clean`` beside ``changed`` (the modality's own preview; text previews are shown as text)."""
    modality = data.modality
    if modality.name == "image":
        png = rendered(lambda p: stages_grid([(stages[0], clean), (stages[1], changed)], p, titles=titles))
        return image(png, caption)
    suffix = modality.preview_suffix
    raw = rendered(lambda p: modality.write_preview(clean, changed, p, titles=titles), suffix)
    return image(raw, caption) if suffix == ".png" else {"kind": "text", "text": raw.decode("utf-8"),
                                                          "caption": caption}


def trigger_examples(key: Key, data: Records, n: int = _N_EXAMPLES) -> dict[str, str]:
    """Clean probes beside the same probes with the key's trigger (a multi-mark key: mark i on example i)."""
    marks = key.mark_list()
    eligible = np.flatnonzero(data.labels != key.target) if key.target is not None else np.arange(len(data))
    rows = eligible[:n]
    clean = data.take(rows)
    triggered = np.concatenate([marks[i % len(marks)].trigger.apply(clean[i:i + 1]) for i in range(len(rows))])
    titles = [data.class_names[data.labels[r]] for r in rows]
    caption = (f"{len(rows)} probes of {data.where} without and with the key's trigger"
               + (f" (marks 1 to {min(len(rows), len(marks))} of {len(marks)}, one per example)"
                  if len(marks) > 1 else ""))
    return _preview(data, clean, triggered, titles, caption, ("clean", "triggered"))


def released_examples(key: Key, original: Records, watermarked: Records, n: int = _N_EXAMPLES) -> dict[str, str]:
    """The key's first marked rows as released: original, watermarked, change (see :func:`watermark_stages`)."""
    suffix = ".png" if original.modality.name == "image" else original.modality.preview_suffix
    shown = {}

    def draw(path: Path) -> None:
        shown["n"] = watermark_stages(key, original, watermarked, path, n=n)

    raw = rendered(draw, suffix)
    caption = f"{shown['n']} marked training rows of {original.where} before and after watermarking"
    return image(raw, caption) if suffix == ".png" else {"kind": "text", "text": raw.decode("utf-8"),
                                                          "caption": caption}
