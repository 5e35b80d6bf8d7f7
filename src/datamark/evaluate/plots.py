"""Pictures: what the owner releases (trigger previews) and what verification found (p-values per scenario)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import numpy as np

from .._io import Journal, atomic_path
from .scenarios import ScenarioRow


def figure_png(fig) -> bytes:
    """The PNG bytes of ``fig`` (120 dpi, tight), rendered in memory; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _save(fig, path: str | os.PathLike, overwrite: bool, journal: Journal | None = None) -> None:
    """Render ``fig`` in memory, then write the PNG atomically (a normal file's permissions)."""
    png = figure_png(fig)
    with atomic_path(path, overwrite=overwrite, what="picture", journal=journal) as tmp:
        tmp.write_bytes(png)


def _figure(rows: int, cols: int, size: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)


def preview_grid(images: np.ndarray, marked: np.ndarray, path: str | os.PathLike, *, titles: Sequence[str] = (),
                 overwrite: bool = False) -> None:
    """A PNG with each original image above its marked version and the magnified difference (x4) below."""
    diff = np.clip(np.abs(marked.astype(np.int16) - images.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
    stages_grid([("original", images), ("watermarked", marked), ("|diff| x4", diff)], path, titles=titles,
                overwrite=overwrite)


def stages_grid(stages: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike, *, titles: Sequence[str] = (),
                overwrite: bool = False, journal: Journal | None = None) -> None:
    """A PNG with one row per named stage (each an N x H x W x C uint8 batch) and one column per image.

    ``journal`` lets a caller undo the write (see :class:`datamark._io.Journal`)."""
    n = len(stages[0][1])
    fig, axes = _figure(len(stages), n, 1.6)
    for i, (label, images) in enumerate(stages):
        for j in range(n):
            img, ax = images[j], axes[i][j]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
            if i == 0 and j < len(titles):
                ax.set_title(titles[j], fontsize=8)
    _save(fig, path, overwrite, journal)


def pvalue_plot(results: dict[str, Sequence[ScenarioRow]], path: str | os.PathLike, *, alpha_probs: float,
                alpha_labels: float, overwrite: bool = False) -> None:
    """-log10 p per scenario and mode for each method, with the significance levels drawn in."""
    fig, axes = _figure(1, len(results), 4.0)
    for ax, (method, rows) in zip(axes[0], results.items(), strict=False):
        names = [r.scenario for r in rows]
        x = np.arange(len(rows))
        for offset, mode, alpha in ((-0.2, "probs", alpha_probs), (0.2, "labels", alpha_labels)):
            heights = [min(-getattr(r, mode).outcome.log10_p, 50.0) for r in rows]
            ax.bar(x + offset, heights, width=0.4, label=f"{mode} (alpha={alpha:g})")
            ax.axhline(-math.log10(alpha), linestyle="--", linewidth=0.8, color="C0" if mode == "probs" else "C1")
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel("-log10 p (capped at 50)")
        ax.set_title(method)
        ax.legend(fontsize=7)
    _save(fig, path, overwrite)


def _panel(attack: dict) -> str:
    """The trade-off panel of an attack (``Attack.to_dict()``): its name, or a chain's step names in order, so that
    each kind of chain (fine-tune + distill) is a countermeasure of its own with its strengths along the curve."""
    steps = attack.get("params", {}).get("steps") if attack["name"] == "sequence" else None
    return " + ".join(step["name"] for step in steps) if steps else attack["name"]


def tradeoff_plot(series: dict[str, Sequence[dict]], path: str | os.PathLike, *, alpha: float,
                  overwrite: bool = False) -> None:
    """The thief's trade-off: one panel per countermeasure, its accuracy cost (points) against -log10 p of the
    re-verification, one line per watermark (``series``: method -> rows of
    :meth:`~datamark.evaluate.robustness.SurvivalRow.to_dict`), points in order of cost. Filled markers are
    stolen models (above the dashed alpha line: still accused), hollow ones the clean control (must stay below);
    the dotted line marks a thief's 3-point accuracy budget, and a solid one the cost of not stealing at all (an
    own-data row, drawn on every panel instead of its own).
    """
    from .attacks import ignores_model

    baselines = [r["cost_points"] for rows in series.values() for r in rows
                 if ignores_model(r["attack"]["name"]) and r["model"] == "stolen"]
    names = sorted({_panel(r["attack"]) for rows in series.values() for r in rows
                    if r["attack"]["name"] != "none" and not ignores_model(r["attack"]["name"])})
    cols = min(4, max(1, len(names)))
    fig, axes = _figure(math.ceil(len(names) / cols), cols, 3.2)
    flat = [ax for row in axes for ax in row]
    for ax, name in zip(flat, names, strict=False):
        for i, (method, rows) in enumerate(series.items()):
            for model, fill in (("stolen", f"C{i}"), ("clean", "none")):
                picked = sorted((r for r in rows if _panel(r["attack"]) == name and r["model"] == model),
                                key=lambda r: r["cost_points"])
                if not picked:
                    continue
                p = [r["p_probs"] if r["p_probs"] is not None else r["p_labels"] for r in picked]
                y = [min(-math.log10(max(v, 1e-300)), 50.0) for v in p]
                x = [r["cost_points"] for r in picked]
                ax.plot(x, y, marker="o", markerfacecolor=fill, color=f"C{i}", linewidth=0.8 if fill != "none"
                        else 0.0, label=f"{method} ({model})")
        ax.axhline(-math.log10(alpha), linestyle="--", linewidth=0.8, color="gray")
        ax.set_ylim(0, max(ax.get_ylim()[1], 1.5 * -math.log10(alpha)))
        ax.axvline(3.0, linestyle=":", linewidth=0.8, color="gray")  # a thief's 3-point accuracy budget
        for cost in baselines:  # no theft: a fresh model on the thief's own rows (own-data)
            ax.axvline(cost, linestyle="-", linewidth=0.8, color="black", alpha=0.5,
                       label="no theft: a fresh model on the thief's own rows")
        low, high = ax.get_xlim()
        ax.set_xlim(min(low, -0.5), max(high, 4.0, *(cost + 0.5 for cost in baselines)))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("thief's accuracy cost (points)", fontsize=8)
    for row in axes:
        row[0].set_ylabel(f"-log10 p (capped at 50; dashed: alpha = {alpha:g})", fontsize=8)
    for ax in flat[len(names):]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.45, wspace=0.3)  # room for each panel's title under the row above
    legend = {label: handle for ax in flat for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(4, len(legend)), fontsize=7,
                   bbox_to_anchor=(0.5, -0.12))
    _save(fig, path, overwrite)
