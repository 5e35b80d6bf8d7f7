"""``attack``: play the thief. Apply countermeasures to a stolen model and re-verify after each."""

from __future__ import annotations

from pathlib import Path

import typer

from ..exceptions import DatamarkError
from ._common import check_json_output, emit_json, existing, human, json_option, run

DEFAULT_QUERY_ATTACKS = ("jpeg:quality=50", "blur:sigma=1.0", "median:size=3", "bit-depth:bits=4", "round:decimals=1",
                         "top1", "logit-noise:sigma=1.0")
# fine-tune then distil: the thief that removed every key on the full-width CIFAR-10 fastnet (README, "At full
# width"); own-data: no theft at all, the cost that the others' costs are read against
DEFAULT_MODEL_ATTACKS = ("fine-tune:lr=0.01", "fine-prune:prune=0.5", "distill", "fine-tune:lr=0.05+distill",
                         "own-data")


def verdict_words(row) -> str:
    """A survival row's verdict in the progress line: the owner's verdict, and a label-only accusation where the
    probability verdict does not accuse (for the clean control that is a false accusation too). A row whose model
    never saw the stolen one (own-data) is an innocent baseline and says so."""
    from ..evaluate.attacks import ignores_model

    words = "ACCUSED" if row.accused else "ACCUSED with labels only" if row.accused_in_either_mode else "not accused"
    if ignores_model(row.attack["name"]):
        return f"{words} (innocent baseline: {'a FALSE accusation' if row.accused_in_either_mode else 'as it should'})"
    return words


def _list_attacks(out) -> None:
    from ..evaluate.attacks import KINDS, attack_names, parse_attack

    for kind in KINDS:
        out.print(f"[bold]{kind}[/]")
        for name in attack_names(kind):
            attack = parse_attack(name)
            doc = (type(attack).__doc__ or "").strip().splitlines()[0]
            out.print(f"  {attack.label}: {doc}")


def attack(
    key_path: Path | None = typer.Option(None, "--key", "-k", help="The owner's secret key."),
    model: Path | None = typer.Option(None, "--model", "-m", help="The stolen model: a datamark checkpoint (the "
                                      "thief's countermeasures need its weights)."),
    data: str | None = typer.Option(None, "--data", "-d", help="Held-out test data: benign accuracy and the "
                                    "verification probes (e.g. the test split)."),
    attacks: list[str] | None = typer.Option(None, "--attack", "-a", help="NAME[:PARAM=VALUE,...], repeatable "
                                             "(see --list); attacks joined by '+' are one thief's steps "
                                             "in the order they run: a data filter or training recipe, "
                                             "model-side steps, the API's query-side steps "
                                             "(loss-filter:fraction=0.2+distill, fine-tune:lr=0.05+distill). "
                                             "Default: the query-side set, plus fine-tune, fine-prune, distill, "
                                             "fine-tune-then-distill and own-data (a fresh model on the "
                                             "thief's data alone: the cost of not stealing) when "
                                             "--thief-data is given."),
    thief_data: str | None = typer.Option(None, help="The thief's own clean data, for model-side attacks "
                                          "(fine-tuning, fine-pruning, distillation, own-data)."),
    released: str | None = typer.Option(None, help="The released (watermarked) data, for data- and training-side "
                                        "attacks, which retrain from it."),
    clean_model: Path | None = typer.Option(None, help="A model trained without the watermark: each query- and "
                                            "model-side attack is also applied to it, and must not make it "
                                            "accused."),
    seed: int = typer.Option(0, help="Seed of the thief's randomness (noise, training)."),
    list_attacks: bool = typer.Option(False, "--list", help="List the attacks with their defaults and exit."),
    progress: bool = typer.Option(False, help="Show training progress."),
    json_path: Path | None = json_option("every row (written after each attack, so an interrupted run keeps "
                                         "what it measured)"),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """Does the watermark survive a thief? Each countermeasure's accuracy cost beside the re-verified p-value.

    Query-side attacks purify what the owner sends or receives (JPEG, blur, rounding, top-1); model-side attacks
    change the stolen model with the thief's clean data; data- and training-side attacks retrain from the
    released data. Exit status: 0 the table was made; 2 error.
    """
    from ..evaluate.attacks import parse_attack

    def work():
        out = human(json_path)
        if list_attacks:
            _list_attacks(out)
            return
        missing = [name for name, value in (("--key", key_path), ("--model", model), ("--data", data))
                   if value is None]
        if missing:
            raise DatamarkError(f"attack needs {', '.join(missing)} (or --list to see the attacks).")
        specs = list(attacks or DEFAULT_QUERY_ATTACKS + (DEFAULT_MODEL_ATTACKS if thief_data else ()))
        chosen = [parse_attack(spec) for spec in specs]  # every spec checked before any work
        from ..evaluate.robustness import check_needs

        for each in chosen:  # and what each needs (the thief's data, the release), before anything is read
            check_needs(each, thief_data=thief_data, released=released)
        inputs = existing(key_path, model, data, thief_data, released, clean_model)
        check_json_output(json_path, overwrite=overwrite, inputs=inputs)
        from ..data import load_data
        from ..evaluate.robustness import survival
        from ..key import Key
        from ..models import load_checkpoint

        key = Key.load(key_path)
        test = load_data(data)
        document: dict = {"commitment": key.commitment, "seed": seed, "attacks": specs, "rows": [],
                          "complete": False}
        written = [False]

        def on_row(row) -> None:
            document["rows"].append(row.to_dict())
            p = f"{row.probs.outcome.p_value:.3g}" if row.probs is not None else "–"
            out.print(f"{row.label:<32} {row.model:<6} BA {100 * row.ba:6.2f} % ({row.cost_points:+6.2f} pt)  "
                      f"p probs {p:>9}  p labels {row.labels.outcome.p_value:9.3g}  "
                      f"{verdict_words(row)}")
            if json_path is not None and str(json_path) != "-":
                emit_json(document, "attack-result", json_path, overwrite=overwrite or written[0], inputs=inputs)
                written[0] = True

        out.print(f"key commitment: {key.commitment}; {len(chosen)} attack(s); seed {seed}; survival = the stolen "
                  f"model still accused (p < alpha = {key.plan.alpha:g})")
        survival(key, chosen, test, stolen=load_checkpoint(model),
                 clean=load_checkpoint(clean_model) if clean_model else None,
                 thief_data=load_data(thief_data) if thief_data else None,
                 released=load_data(released) if released else None, seed=seed, progress=progress, on_row=on_row)
        document["complete"] = True
        emit_json(document, "attack-result", json_path, overwrite=overwrite or written[0], inputs=inputs)

    run(work)
