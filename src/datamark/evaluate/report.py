"""Scenario tables as Markdown (README, results files) and rich tables (terminal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .attacks import ignores_model
from .scenarios import ScenarioRow

TARGETED = ("Scenario", "BA %", "WSR %", "ΔP", "p (probs)", "flip rate", "p (labels)", "verdict (probs / labels)")
UNTARGETED = ("Scenario", "BA %", "ASR-A %", "ASR-C %", "D_p", "ΔP", "p (probs)", "flip rate", "p (labels)",
              "verdict (probs / labels)")


SPECIFICITY = "p specificity (probs / labels)"
MARKS = "marks hit (probs / labels)"  # multi-mark keys: hits of K marks, the exact test's statistic


def _controlled(rows: Sequence[ScenarioRow]) -> bool:
    return any(r.probs.specificity is not None for r in rows)


def _marks(rows: Sequence[ScenarioRow]) -> bool:
    return any(r.probs.marks is not None for r in rows)


def _header(rows: Sequence[ScenarioRow]) -> tuple[str, ...]:
    head = UNTARGETED if any(r.extra for r in rows) else TARGETED
    if _marks(rows):  # the hits replace the flip rate; ΔP is the paired effect beside the exact test
        head = tuple(MARKS if h == "flip rate" else h for h in head)
    return (*head[:-1], SPECIFICITY, head[-1]) if _controlled(rows) else head


# The terminal's names: a scenario table fits 80 columns without cutting "Independent-M" and "-T" to "Indepen…"
SHORT = {"Independent-M": "Indep-M", "Independent-T": "Indep-T", "p (probs)": "p P", "p (labels)": "p L",
         "flip rate": "flips L", MARKS: "hits P / L", SPECIFICITY: "p spec P / L", "verdict (probs / labels)":
         "accused P / L", "Scenario": "scenario"}
LEGEND = ("P / L: probability / label-only access. Indep-M: a model trained on clean data; Indep-T: the stolen model "
          "queried with another owner's trigger of the same kind. Neither may be accused.")


def _cells(row: ScenarioRow, controlled: bool = False, short: bool = False) -> tuple[str, ...]:
    def verdict(r):
        return ("yes" if r.accused else "no") if short else ("accused" if r.accused else "not accused")

    def p_specificity(r):
        return f"{r.specificity.p_value:.3g}" if r.specificity is not None else "–"

    name = SHORT.get(row.scenario, row.scenario) if short else row.scenario
    success = (f"{100 * row.wsr:.2f}",)
    if row.extra:
        success += (f"{100 * row.extra['asr_c']:.2f}", f"{row.extra['d_p']:.4f}")
    control = (f"{p_specificity(row.probs)} / {p_specificity(row.labels)}",) if controlled else ()
    if row.probs.marks is not None:
        effect = row.probs.effect.effect if row.probs.effect is not None else float("nan")
        hits = f"{row.probs.marks['hits']}/{row.probs.marks['marks_asked']} / {row.labels.marks['hits']}/" \
               f"{row.labels.marks['marks_asked']}"
        return (name, f"{100 * row.ba:.2f}", *success, f"{effect:.3f}", f"{row.probs.outcome.p_value:.3g}",
                hits, f"{row.labels.outcome.p_value:.3g}", *control, f"{verdict(row.probs)} / {verdict(row.labels)}")
    return (name, f"{100 * row.ba:.2f}", *success, f"{row.probs.outcome.effect:.3f}",
            f"{row.probs.outcome.p_value:.3g}", f"{row.labels.outcome.effect:.2f}", f"{row.labels.outcome.p_value:.3g}",
            *control, f"{verdict(row.probs)} / {verdict(row.labels)}")


def markdown_table(rows: Sequence[ScenarioRow]) -> str:
    """A GitHub Markdown table of the scenarios (WSR for targeted keys; ASR-A, ASR-C, D_p for untargeted)."""
    header = _header(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r, _controlled(rows))) + " |" for r in rows]
    return "\n".join(lines)


def rich_table(rows: Sequence[ScenarioRow], title: str):
    """A rich Table for the terminal: short names, so it reads whole at 80 columns (print :data:`LEGEND` beside
    it: a caption would be cut to the table's width)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for head in _header(rows):
        left = head in ("Scenario", "verdict (probs / labels)")
        table.add_column(SHORT.get(head, head), justify="left" if left else "right", no_wrap=head != SPECIFICITY)
    for row in rows:
        table.add_row(*_cells(row, _controlled(rows), short=True))
    return table


def clean_accused(row: dict) -> str:
    """The clean control's verdict for a survival table (a ``SurvivalRow.to_dict()``): "**YES**" where the owner's
    verdict accuses, "**YES (labels)**" where only the label-only one does, else "no"."""
    if row["accused"]:
        return "**YES**"
    return "**YES (labels)**" if (row.get("labels") or {}).get("accused") else "no"


def survival_table(rows: Sequence[Any]) -> str:
    """Markdown: one line per countermeasure, the stolen model's accuracy cost and p-values beside the clean
    control's (rows: :class:`~datamark.evaluate.robustness.SurvivalRow` or their ``to_dict()``)."""
    rows = [r if isinstance(r, dict) else r.to_dict() for r in rows]
    clean = {r["label"]: r for r in rows if r["model"] == "clean"}

    def p(r: dict) -> str:
        probs = "–" if r["p_probs"] is None else f"{r['p_probs']:.2g}"
        return f"{probs} / {r['p_labels']:.2g}"

    def channels(r: dict) -> str:  # keys with a confusion channel: each channel's p (probs, else labels)
        verdict = r.get("probs") or r.get("labels") or {}
        found = verdict.get("channels") or {}
        return " / ".join(f"{found[name]['p_value']:.2g}" for name in ("marks", "confusion")) if found else "–"

    split = any((r.get("probs") or r.get("labels") or {}).get("channels") for r in rows)
    lines = ["| countermeasure | kind | BA stolen % | cost (pt) | p stolen (probs / labels) | survives | "
             "p clean (probs / labels) | clean accused |" + (" p stolen: marks / confusion |" if split else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if split else "")]
    baselines = []
    for r in (r for r in rows if r["model"] == "stolen"):
        c = clean.get(r["label"])
        if ignores_model(r["attack"].get("name", "")):  # an innocent model (own-data): accused = falsely
            baselines.append(r)
            flag = clean_accused(r)
            survives = "– (innocent)" if flag == "no" else f"{flag}: an innocent model accused"
        else:
            survives = "yes" if r["accused"] else "**no**"
        lines.append(f"| {r['label']} | {r['attack']['kind']} | {100 * r['ba']:.2f} | {r['cost_points']:+.2f} | "
                     f"{p(r)} | {survives} | {p(c) if c else '–'} | "
                     f"{clean_accused(c) if c else '–'} |"
                     + (f" {channels(r)} |" if split else ""))
    for r in baselines:
        lines.append(f"\n{r['label']} is no theft: a fresh model on the thief's own rows costs it "
                     f"{r['cost_points']:+.2f} points. A countermeasure that escapes at that cost or more buys the "
                     f"thief nothing it could not have had without the owner's data.")
    return "\n".join(lines)
