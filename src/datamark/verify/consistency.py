"""Is a key what its secret draws? The check that keeps a forger's crafted triggers out of a verdict.

Threat model (issue 15, "forgery"). A forger holds a clean model M -- one never trained on anybody's
watermarked data -- and wants datamark to accuse it. It has no owner's key, but it can write any key file it
likes: choose the secret, the method parameters, the triggers (e.g. a patch or blend pattern optimised by PGD on
M so that M sends stamped inputs to a class of its choice) and the secret choices (targets, embedded
candidates), and recompute the file's checksum. It can query M freely and can try as many secrets as it likes.

Why the check matters. The exact marks test (:mod:`datamark.verify.marks_test`) bounds false accusations by alpha
because each mark's secret choice is *uniform and independent of the suspect*. A trigger crafted on M toward
that mark's target makes every mark a hit: the bound is void. So a key whose triggers or secret choices are not
the ones its secret and recorded method parameters draw is refused (:func:`check_key`, called by
:meth:`datamark.key.Key.validate` on load). What is left to the forger is honest keys: it may draw secrets until
one's honestly drawn key happens to accuse M. Each try succeeds with probability <= alpha (the calibration
guarantee), so a search of about 1/alpha secrets finds one; what rules the search out is the *commitment*,
published before M existed: a key found after M was made cannot carry it. Every verdict presumes that.

What cannot be re-drawn, and what the key then says (:class:`Provenance`):

* a single-mark key made with a hand-made trigger (``trigger=`` in Python) or an owner-chosen target
  (``target=``, ``--target``; recorded in the method parameters). A hand-made trigger is not recorded as given,
  so a single-mark key whose trigger differs from the secret's draw is taken as owner-chosen and said so; the
  verifier withholds an accusation that rests on it unless told to accept it
  (:attr:`~datamark.verify.result.VerificationResult.owner_trigger`). Named triggers (``trigger_name``,
  ``--trigger style|pulse|noise``) are drawn from the secret and re-drawn like the defaults. Multi-mark keys
  never have owner-chosen triggers or targets (the methods refuse them), so for them every difference is a
  forgery.
* graph triggers of keys written before keys recorded the statistics they are drawn from (``trigger_stats``:
  the mean graph size, the node-label frequencies, the attribute pool); their marks' secret choices are still
  checked, their triggers are not. Newer graph keys are re-drawn like any other.
* which rows were marked: that needs the protected dataset; verification never reads those rows.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

from ..exceptions import DataError, DatamarkError, KeyFormatError
from ..key import Key
from ..marks import Mark
from ..modalities import Modality, get_modality


@dataclass(frozen=True)
class Provenance:
    """Where a key's triggers and secret choices come from (after :func:`check_key` let the key through).

    ``owner_trigger``/``owner_target``: the single mark's trigger / target was chosen by the owner, not drawn from
    the secret. ``triggers_checked`` is False where the triggers cannot be re-drawn from the key alone
    (``unchecked`` says why); the secret choices are always checked.
    """

    owner_trigger: bool = False
    owner_target: bool = False
    triggers_checked: bool = True
    unchecked: str = ""

    @property
    def drawn(self) -> bool:
        """Every trigger and secret choice was re-drawn from the secret and matched."""
        return not (self.owner_trigger or self.owner_target) and self.triggers_checked

    def describe(self) -> str:
        """In words safe to publish (no trigger, no target)."""
        if self.owner_trigger or self.owner_target:
            what = " and ".join(w for w, chosen in (("trigger", self.owner_trigger), ("target", self.owner_target))
                                if chosen)
            return (f"{what} chosen by the owner, not drawn from the secret: a verdict rests on the specificity "
                    f"control and on the commitment having been published before the suspect existed")
        if not self.triggers_checked:
            return f"secret choices drawn from the secret (checked); triggers not re-drawable ({self.unchecked})"
        return "triggers and secret choices drawn from the secret (checked)"


class _KeyData:
    """What :meth:`WatermarkMethod.draw_marks` reads of a dataset (class count, modality, name), from a key."""

    def __init__(self, num_classes: int, modality: Any) -> None:
        self.num_classes, self.modality, self.where = num_classes, modality, "the key's dataset"


class _NoTriggers:
    """A stand-in modality for data whose triggers the key alone cannot re-draw: it draws ``None`` for each
    trigger, so :meth:`WatermarkMethod.draw_marks` still draws every secret choice from its own purpose."""

    def __init__(self, name: str) -> None:
        self.name = name

    def default_trigger(self, rng: Any) -> None:
        return None

    def mark_trigger(self, rng: Any, name: str | None = None, mark: int = 0, n_marks: int = 1) -> None:
        return None


def key_modality(key: Key) -> Modality | None:
    """The modality a key's triggers were drawn for, rebuilt from its dataset record; None where the draw needs
    what the key does not hold (graph keys written before they recorded their ``trigger_stats``)."""
    kind = key.dataset.get("modality", "image")
    if kind == "audio":
        return get_modality("audio", sample_rate=int(key.dataset["sample_rate"]),
                            length=int(key.dataset.get("clip_samples") or key.dataset["sample_rate"]))
    if kind == "graph":
        stats = key.dataset.get("trigger_stats")
        if stats is None:  # keys written before the statistics were recorded
            return None
        from ..modalities.graph import MARK_SIZES, GraphModality
        from ..triggers.graph_stats import GraphStats

        modality = GraphModality(key.dataset.get("node_label_values"), int(key.dataset.get("attr_dim", 0)),
                                 key.dataset.get("max_degree"))
        modality.stats = GraphStats.from_record(stats)
        sizes = key.dataset.get("mark_sizes", "same")  # "same": keys written before marks were sized apart
        if sizes not in MARK_SIZES:
            raise KeyFormatError(f"The key's dataset record says mark_sizes {sizes!r}; known: {list(MARK_SIZES)}. "
                                 f"It was edited or written by a newer datamark.")
        modality.mark_sizes = sizes
        return modality
    return get_modality(kind)


def redraw_marks(key: Key, *, single: bool) -> tuple[tuple[Mark, ...], str]:
    """The marks the key's secret and method parameters draw (``single``: as the papers' single mark), and why
    their triggers could not be drawn ("" when they were). Where the key alone cannot re-draw the triggers (graphs,
    or a resource the draw reads is missing here) they are None and only the secret choices are drawn."""
    from ..methods import build_method  # the methods import the key

    params = {k: v for k, v in key.method["params"].items() if k != "seed"}
    method = build_method(str(key.method["name"]), params, strict=True)
    if single:
        method = dataclasses.replace(method, n_marks=1)
    num_classes, shape = int(key.dataset["num_classes"]), tuple(key.dataset.get("input_shape") or ())
    modality = key_modality(key)
    why = "graph triggers are drawn from statistics of the protected graphs, which this older key does not record"
    with warnings.catch_warnings():  # a re-draw repeats protect's warnings (trigger sizes): they were shown then
        warnings.simplefilter("ignore")
        if modality is not None:
            try:
                return tuple(method.draw_marks(_KeyData(num_classes, modality), key.secret_bytes, shape)), ""
            except (OSError, ImportError, LookupError, DataError) as err:  # e.g. no WordNet files for word triggers
                why = f"the trigger draw needs what is missing here: {err}"
        stand_in = _KeyData(num_classes, _NoTriggers(str(key.dataset.get("modality"))))
        return tuple(method.draw_marks(stand_in, key.secret_bytes, shape)), why


def _forged(where: str, what: str, detail: str) -> KeyFormatError:
    return KeyFormatError(f"The key '{where}' is refused: the key's {what} are not the ones its secret draws: a "
                          f"forged or hand-edited key; {detail}. Verify only with the key file protect wrote.")


def check_key(key: Key, where: str = "the key") -> Provenance:
    """Re-draw the key's marks from its secret and method parameters; refuse a key whose triggers or secret
    choices differ (:class:`KeyFormatError`, one line), else say where they come from.

    Multi-mark keys (and UBW-P's candidate keys) must match exactly. A single-mark key may carry an owner-chosen
    target (recorded in its method parameters) or trigger (not recorded: taken as such when it differs from the
    draw); its target must be the drawn one, or the one its parameters fix.
    """
    own, multi = key.mark_list(), bool(key.marks)
    try:
        drawn, unchecked = redraw_marks(key, single=not multi)
    except (ValueError, TypeError, KeyError) as err:  # ParameterError and KeyFormatError are ValueErrors
        raise KeyFormatError(f"The key '{where}' cannot be re-drawn from its secret ({type(err).__name__}: {err}); "
                             f"it was edited or damaged; use the original key file.") from err
    checked = not unchecked
    if multi:
        if len(drawn) != len(own):
            raise _forged(where, "marks", f"it has {len(own)} marks where its method parameters draw {len(drawn)}")
        for j, (mark, redrawn) in enumerate(zip(own, drawn, strict=True)):
            if mark.target != redrawn.target:
                raise _forged(where, "targets", f"mark {j}'s target differs")
            if len(mark.candidates) != len(redrawn.candidates) or mark.embedded != redrawn.embedded:
                raise _forged(where, "embedded candidates", f"mark {j}'s embedded candidate differs")
            if checked and _triggers(mark) != _triggers(redrawn):
                raise _forged(where, "triggers", f"mark {j}'s trigger differs")
        return Provenance(triggers_checked=checked, unchecked=unchecked)
    fixed = key.method["params"].get("target")
    if key.target != drawn[0].target:
        raise _forged(where, "targets", "its target differs" if fixed is None else
                      f"its target is not the one its method parameters fix ({fixed})")
    owner_trigger = checked and (bool(drawn[0].candidates) or _triggers(own[0]) != _triggers(drawn[0]))
    return Provenance(owner_trigger=owner_trigger, owner_target=fixed is not None, triggers_checked=checked,
                      unchecked=unchecked)


def _triggers(mark: Mark) -> list[dict[str, Any]]:
    """A mark's triggers as their configurations (JSON values compare exactly, patterns byte for byte)."""
    return [t.to_config() for t in (mark.candidates or (mark.trigger,))]


def provenance(key: Key) -> Provenance | None:
    """:func:`check_key` for display: None (instead of an error) for a key that fails it, e.g. an in-memory
    :func:`~datamark.evaluate.scenarios.independent_key`, which draws its marks from another purpose."""
    try:
        return check_key(key)
    except (DatamarkError, ValueError, TypeError, KeyError):
        return None
