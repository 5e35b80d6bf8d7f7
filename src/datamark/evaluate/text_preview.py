"""What a text watermark did to released rows, as Markdown: each original beside its watermarked version, with
the inserted or rewritten words in bold (a word-level diff), so an owner can read what they publish."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

import numpy as np

from .._io import atomic_path


def highlight_changes(before: str, after: str) -> str:
    """``after`` with the words that are not in ``before`` (inserted or replaced) in bold."""
    old, new = before.split(), after.split()
    out: list[str] = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        words = new[j1:j2]
        out += words if op == "equal" else [f"**{w}**" for w in words]
    return " ".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def text_preview(originals: np.ndarray, marked: np.ndarray, path: str | os.PathLike, *,
                 titles: Sequence[str] = (), overwrite: bool = False) -> None:
    """Write a Markdown table (label change, original, watermarked with changes in bold) atomically."""
    lines = ["| label | original | watermarked (changes in bold) |", "|---|---|---|"]
    for i, (before, after) in enumerate(zip(originals, marked, strict=True)):
        title = titles[i] if i < len(titles) else ""
        lines.append(f"| {_cell(title)} | {_cell(str(before))} | {_cell(highlight_changes(str(before), str(after)))} |")
    with atomic_path(path, overwrite=overwrite, what="preview") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
