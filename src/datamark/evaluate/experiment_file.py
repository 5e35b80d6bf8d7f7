"""An experiment as one TOML file: data, model, methods and verification, so a benchmark row is one file.

``datamark run FILE.toml`` (and ``datamark demo``, which runs a packaged file) reads it with the standard
library's :mod:`tomllib`, validates every setting like a constructor argument (an unknown table or key is an
error naming the file, the key and the accepted ones; never a silent default), and runs
:func:`~datamark.evaluate.experiment.run_experiment`. The file's text and its sha256 go into ``results.json``, so
a result says exactly which settings produced it. The layout::

    [experiment]           # name, description, seed (training seed and the Independent-T key's seed)
    [data]                 # train, test (anything load_data reads), limit (a seeded subset of train; optional)
    [model]                # arch, and any training setting of the arch's trainer (epochs, lr, batch_size, ...)
    [verify]               # mode, n_probe, margin, alpha, n_control_triggers (default: each key's plan)
    [methods.NAME]         # one table per watermark: method (default NAME), then the method's parameters;
                           # trigger = {name = "...", params = {...}} for a trigger other than the method's own;
                           # preset = "robust": a named preset's settings where the table leaves them out
    [robustness]           # optional: attacks = ["jpeg:quality=50", "distill:rows=5000", ...] (datamark attack
                           # --list), thief_data (model-side attacks: the thief's clean data), thief_rows
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import ParameterError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SECTIONS = {"experiment": {"name", "description", "seed"}, "data": {"train", "test", "limit"},
            "model": None, "verify": {"mode", "n_probe", "margin", "alpha", "n_control_triggers"},
            "methods": None,  # None: checked against the model's trainer or each method's own parameters
            "robustness": {"attacks", "thief_data", "thief_rows"}}


@dataclass(frozen=True)
class ExperimentFile:
    """A parsed, validated experiment file. Build with :meth:`load` (a path) or :meth:`parse` (its text)."""

    name: str
    train: str
    test: str
    arch: str
    source: str                                   # the file's text, as read
    path: str = "<text>"
    description: str = ""
    seed: int = 0
    limit: int | None = None
    training: dict[str, Any] = field(default_factory=dict)   # trainer settings beside ``arch``
    verify: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # NAME -> {"method": ..., parameters}
    attacks: tuple[str, ...] = ()                # [robustness]: the thief's countermeasures, NAME:PARAM=VALUE
    thief_data: str | None = None
    thief_rows: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> ExperimentFile:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise ParameterError(f"No experiment file at '{path}'; pass a .toml file (see 'datamark run "
                                 f"--help' for its layout).") from err
        return cls.parse(text, where=str(path))

    @classmethod
    def parse(cls, text: str, *, where: str = "<text>") -> ExperimentFile:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ParameterError(f"{where} is not valid TOML: {err}. Fix the line it names.") from err
        _only(doc, set(SECTIONS), where, "top level")
        for section, keys in SECTIONS.items():
            if not isinstance(doc.get(section, {}), dict):
                raise ParameterError(f"{where}: [{section}] must be a table; got {type(doc[section]).__name__}.")
            if keys is not None:
                _only(doc.get(section, {}), keys, where, f"[{section}]")
        meta, data, model = doc.get("experiment", {}), doc.get("data", {}), dict(doc.get("model", {}))
        for section, key in (("data", "train"), ("data", "test"), ("model", "arch")):
            if not isinstance(doc.get(section, {}).get(key), str):
                raise ParameterError(f"{where}: [{section}] needs {key} = \"...\" (a string).")
        methods = doc.get("methods", {})
        if not methods:
            raise ParameterError(f"{where}: no [methods.NAME] table; add at least one watermark to run.")
        parsed = cls(name=str(meta.get("name", Path(where).stem)), description=str(meta.get("description", "")),
                     seed=_integer(meta.get("seed", 0), where, "[experiment] seed", low=0),
                     train=data["train"], test=data["test"],
                     limit=None if data.get("limit") is None else _integer(data["limit"], where, "[data] limit", 2),
                     arch=model.pop("arch"), training=model, verify=dict(doc.get("verify", {})),
                     methods={name: _method_table(name, table, where) for name, table in methods.items()},
                     source=text, path=where, **_robustness(doc.get("robustness", {}), where))
        parsed.train_config()  # validate now, not after the clean model has trained
        parsed.verifier()
        parsed.build_methods()
        parsed.build_attacks()
        return parsed

    def train_config(self) -> Any:
        """The trainer's configuration: the arch's preset with this file's [model] settings on top."""
        from ..models import default_config
        from ..registry import MODELS

        if self.arch not in MODELS:
            raise ParameterError(f"{self.path}: [model] arch = '{self.arch}' is not a model; choose one of "
                                 f"{sorted(MODELS)}.")
        config = default_config(self.arch, seed=self.seed)
        _only(self.training, {f.name for f in dataclasses.fields(config)} - {"seed"}, self.path, "[model]",
              hint="the experiment's seed is [experiment] seed")
        try:
            return dataclasses.replace(config, **{k: tuple(v) if isinstance(v, list) else v
                                                  for k, v in self.training.items()})
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{self.path}: a [model] setting has the wrong type or value: {err}.") from err

    def verifier(self) -> Any:
        from ..verify import Verifier

        try:
            return Verifier(**self.verify)
        except ParameterError as err:
            raise ParameterError(f"{self.path}: [verify]: {err}") from err

    def build_methods(self) -> dict[str, Any]:
        """NAME -> the watermark method the file describes (each validated by its own constructor)."""
        from ..methods import build_method
        from ..methods.presets import preset
        from ..triggers.base import Trigger

        built = {}
        for name, table in self.methods.items():
            options = {k: v for k, v in table.items() if k not in ("method", "preset")}
            if "preset" in table:  # the preset's settings where the table leaves them out
                options = preset(table["preset"]).fill(options)[0]
            if isinstance(options.get("trigger"), dict):
                options["trigger"] = Trigger.from_config(options["trigger"])
            try:
                built[name] = build_method(table["method"], options, strict=True)
            except ParameterError as err:
                raise ParameterError(f"{self.path}: [methods.{name}]: {err}") from err
        return built

    def build_attacks(self) -> list[Any]:
        """The [robustness] attacks, each validated; model-side ones need thief_data."""
        from .attacks import parse_attack
        from .attacks.chain import steps_of

        attacks = []
        for spec in self.attacks:
            try:
                attack = parse_attack(spec)
            except ParameterError as err:
                raise ParameterError(f"{self.path}: [robustness] attacks: {err}") from err
            if any(step.kind == "model" for step in steps_of(attack)) and self.thief_data is None:
                raise ParameterError(f"{self.path}: [robustness] attack '{spec}' changes the stolen model with the "
                                     f"thief's clean data; add thief_data = \"...\" (e.g. a held-out split).")
            attacks.append(attack)
        return attacks

    def settings(self) -> dict[str, Any]:
        """What results.json records about the file: where it was, its hash and its whole text."""
        return {"name": self.name, "description": self.description, "path": self.path, "sha256": self.sha256,
                "text": self.source}


def run_experiment_file(spec: ExperimentFile, *, out_dir: str | Path | None, overwrite: bool = False,
                        progress: bool = False, log: Callable[[str], None] = print,
                        clean_checkpoint: str | Path | None = None) -> Any:
    """Load the file's data, then :func:`~datamark.evaluate.experiment.run_experiment` with its settings
    (``clean_checkpoint``: reuse a clean model trained earlier with the same arch and trainer settings)."""
    import numpy as np

    from ..data import load_data
    from ..methods.presets import preset
    from .experiment import run_experiment

    train, test = load_data(spec.train), load_data(spec.test)
    if spec.limit is not None and spec.limit < len(train):  # the same seeded subset as `datamark train --limit`
        train = train.subset(np.sort(np.random.default_rng(spec.seed).permutation(len(train))[:spec.limit]))
    thief = load_data(spec.thief_data) if spec.thief_data is not None else None
    if thief is not None and spec.thief_rows is not None and spec.thief_rows < len(thief):
        thief = thief.subset(np.sort(np.random.default_rng(spec.seed).permutation(len(thief))[:spec.thief_rows]))
    for name, table in spec.methods.items():  # a preset refuses data unlike what it was measured on
        if "preset" in table:
            try:
                preset(table["preset"]).check_records(table["method"], train)
            except ParameterError as err:
                raise ParameterError(f"{spec.path}: [methods.{name}]: {err}") from err
    log(f"{spec.name}: {len(train)} training and {len(test)} test rows ({train.modality.name}, "
        f"{train.num_classes} classes); experiment file sha256 {spec.sha256[:16]}…")
    return run_experiment(train, test, spec.build_methods(), arch=spec.arch, config=spec.train_config(),
                          out_dir=out_dir, verifier=spec.verifier(), overwrite=overwrite, progress=progress,
                          log=log, experiment=spec.settings(), clean_checkpoint=clean_checkpoint,
                          attacks=spec.build_attacks(), thief_data=thief)


def _robustness(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    attacks = table.get("attacks", [])
    if not isinstance(attacks, list) or not all(isinstance(a, str) for a in attacks):
        raise ParameterError(f"{where}: [robustness] attacks must be a list of strings like \"jpeg:quality=50\".")
    thief = table.get("thief_data")
    if thief is not None and not isinstance(thief, str):
        raise ParameterError(f"{where}: [robustness] thief_data must be a string (anything load_data reads).")
    rows = table.get("thief_rows")
    return {"attacks": tuple(attacks), "thief_data": thief,
            "thief_rows": None if rows is None else _integer(rows, where, "[robustness] thief_rows", 2)}


def _method_table(name: str, table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ParameterError(f"{where}: [methods.{name}] must be a table of the method's parameters.")
    method = table.get("method", name)
    if "preset" in table:  # preset = "robust": the preset's method unless the table names one (then they must agree)
        from ..methods.presets import preset

        try:
            chosen = preset(str(table["preset"]))
            if "method" in table and table["method"] != chosen.method:
                raise ParameterError(f"preset '{chosen.name}' is a '{chosen.method}' watermark; drop method = "
                                     f"\"{table['method']}\" or the preset.")
        except ParameterError as err:
            raise ParameterError(f"{where}: [methods.{name}]: {err}") from err
        method = table.get("method", chosen.method)
    return {"method": str(method), **{k: v for k, v in table.items() if k != "method"}}


def _integer(value: Any, where: str, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParameterError(f"{where}: {what} must be an integer >= {low}; got {value!r}.")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str, what: str, hint: str = "") -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ParameterError(f"{where}: {what} has no setting(s) {unknown}; the accepted ones are {sorted(allowed)}"
                             + (f" ({hint})." if hint else "."))
