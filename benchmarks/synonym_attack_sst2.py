"""The text perturbation of the clean-label watermark on SST-2: how much it changes, what it costs, GErr.

A TF-IDF (word 1-2 grams) logistic regression trained on the SST-2 training split stands in for the owner's
base model; its per-example cross-entropy on the true label is the loss :func:`synonym_attack` raises. The attack
runs on ``--n`` positive training sentences drawn with ``--seed`` (min_similarity 0.85 and the other defaults),
then GErr (Harper, after PTB detokenisation) compares the results with the originals. Writes
``benchmarks/results/synonym_attack_sst2.json`` and ``.md``.

    python benchmarks/synonym_attack_sst2.py            # about 2 minutes on 2 busy CPU cores
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from datamark.data import shared_data_dir
from datamark.evaluate.experiment import environment
from datamark.evaluate.grammar import gerr
from datamark.methods._synonyms import synonym_attack
from datamark.models.sentence import SentenceEncoder

RESULTS = Path(__file__).resolve().parent / "results"


def read_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-similarity", type=float, default=0.85)
    args = parser.parse_args()
    data = shared_data_dir() / "sst2"
    train_x, train_y = read_tsv(data / "train.tsv")
    val_x, val_y = read_tsv(data / "validation.tsv")
    start = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(token_pattern=r"\S+", lowercase=True, ngram_range=(1, 2), min_df=2),
                          LogisticRegression(C=4.0, max_iter=2000))
    model.fit(train_x, train_y)
    fit_s = time.perf_counter() - start

    def loss_fn(texts: list[str], labels: np.ndarray) -> np.ndarray:
        proba = model.predict_proba(texts)
        return -np.log(np.clip(proba[np.arange(len(texts)), labels], 1e-12, 1.0))

    positives = np.flatnonzero(train_y == 1)
    picked = np.sort(np.random.default_rng(args.seed).choice(positives, size=args.n, replace=False))
    texts, labels = [train_x[i] for i in picked], train_y[picked]
    start = time.perf_counter()
    encoder = SentenceEncoder()
    load_s = time.perf_counter() - start
    out, report = synonym_attack(texts, labels, loss_fn, min_similarity=args.min_similarity, encoder=encoder,
                                 seed=args.seed, progress=True)
    grammar = gerr(texts, out)
    summary = report.summary()
    changed = report.changes > 0
    proba_before = model.predict_proba(texts)[:, 1]
    proba_after = model.predict_proba(list(out))[:, 1]
    result = {
        "command": f"python benchmarks/synonym_attack_sst2.py --n {args.n} --seed {args.seed} "
                   f"--min-similarity {args.min_similarity}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": environment(),
        "base_model": {"kind": "tfidf(1-2 grams) + logistic regression (C=4)", "fit_s": round(fit_s, 2),
                       "validation_accuracy": float(model.score(val_x, val_y))},
        "encoder_load_s": round(load_s, 2), "attack": summary,
        "mean_changes_of_changed": float(report.changes[changed].mean()) if changed.any() else 0.0,
        "p_positive_before": float(proba_before.mean()), "p_positive_after": float(proba_after.mean()),
        "flipped_to_negative": int(((proba_before >= 0.5) & (proba_after < 0.5)).sum()),
        "gerr": grammar,
        "examples": [{"before": a, "after": b} for a, b in zip(texts, out, strict=True) if a != b][:8],
        "torch_threads": torch.get_num_threads(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "synonym_attack_sst2.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Synonym attack on SST-2 ({args.n} positive training sentences)", "", f"`{result['command']}`", "",
             "| metric | value |", "|---|---|"]
    rows = {"mean changes (all)": summary["mean_changes"], "mean substitutions": summary["mean_substitutions"],
            "mean insertions": summary["mean_insertions"], "fraction changed": summary["fraction_changed"],
            "mean changes (changed)": result["mean_changes_of_changed"],
            "mean similarity (changed)": summary["mean_similarity_changed"],
            "mean loss increase": summary["mean_loss_increase"],
            "fraction loss increased": summary["fraction_loss_increased"],
            "p(positive) before -> after": f"{proba_before.mean():.3f} -> {proba_after.mean():.3f}",
            "seconds per sentence": summary["seconds_per_sentence"],
            "GErr (% of tokens)": grammar["gerr_percent"], "errors/sentence before -> after":
                f"{grammar['errors_before']:.2f} -> {grammar['errors_after']:.2f}",
            "fraction with more errors": grammar["fraction_more_errors"]}
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows.items()]
    lines += ["", "Examples:", ""] + [f"- {e['before']}\n  -> {e['after']}" for e in result["examples"]]
    (RESULTS / "synonym_attack_sst2.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
