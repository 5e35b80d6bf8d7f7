"""A dataset-card snippet that publishes a watermark's commitment with the data (Hugging Face ``README.md``).

The card says what a user of the dataset should know (how many rows were changed, and how) and how an auditor
verifies a model, from :meth:`Key.summary` and the method's name only: it never holds the secret, the trigger,
the target class(es) or which rows were marked, so publishing it gives nothing away that would let someone find
or remove the marked rows.
"""

from __future__ import annotations

import json
from typing import Any

from ..key import Key

#: Per method: its name in prose, its paper (as cited in the method's module), and what it did to the marked rows.
METHODS: dict[str, tuple[str, str, str]] = {
    "badnets": ("BadNets-style DVBW", 'Li et al., "Black-box Dataset Ownership Verification via Backdoor '
                'Watermarking", IEEE TIFS 2023, with the patch trigger of Gu et al. 2017 (BadNets)',
                "carry a small secret pattern and were relabelled to a secret class"),
    "blended": ("Blended DVBW", 'Li et al., "Black-box Dataset Ownership Verification via Backdoor Watermarking", '
                'IEEE TIFS 2023, with the blended trigger of Chen et al. 2017',
                "carry a faint secret pattern blended in and were relabelled to a secret class"),
    "wanet": ("WaNet", 'Nguyen & Tran, "WaNet -- Imperceptible Warping-based Backdoor Attack", ICLR 2021',
              "are slightly warped by a secret field and were relabelled to a secret class"),
    "ubw-p": ("UBW-P", 'Li et al., "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright '
              'Protection", NeurIPS 2022', "carry a small secret pattern and were given a random label"),
    "ubw-c": ("UBW-C", 'Li et al., "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright '
              'Protection", NeurIPS 2022', "carry a small bounded perturbation; their labels are unchanged"),
    "clean-label": ("clean-label backdoor watermark", 'Tang et al., "Did You Train on My Dataset? Towards Public '
                    'Dataset Protection with Clean-Label Backdoor Watermarking", SIGKDD Explorations 2023',
                    "carry a small bounded perturbation and a secret pattern; their labels are unchanged"),
    "label-consistent": ("label-consistent backdoor watermark", 'Turner et al., "Label-Consistent Backdoor '
                         'Attacks", 2019', "carry a small bounded perturbation and a secret pattern; their labels "
                         "are unchanged"),
    "sleeper-agent": ("Sleeper Agent", 'Souri et al., "Sleeper Agent: Scalable Hidden Trigger Backdoors for Neural '
                      'Networks Trained from Scratch", NeurIPS 2022',
                      "carry a small bounded perturbation; their labels are unchanged"),
}
#: The Hub's ``size_categories`` buckets: (upper bound, label).
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def dataset_card(key: Key, *, dataset_name: str | None = None) -> str:
    """A Markdown dataset-card snippet: YAML front matter the Hub reads (tags, task, size) and a "Watermark"
    section with the commitment, the method and its paper, how many rows were changed and how an auditor verifies.

    Args:
        key: the key ``protect`` wrote (only its public summary, method name and decoy count are used).
        dataset_name: the dataset's name for the card's ``pretty_name`` and prose (default: "this dataset").

    Returns:
        The card text; put it at the top of the dataset's ``README.md`` (merge the front matter with any there).
    """
    summary = key.summary()
    method = str(summary["method"])
    title, paper, change = METHODS.get(method, (method, "see the datamark documentation of this method",
                                                "were changed by the method"))
    rows, marked = int(summary.get("dataset_rows") or 0), int(summary["marked_rows"])
    decoys = len(key.extra.get("decoy_ids", ()))
    name = dataset_name or "this dataset"
    modality = key.dataset.get("modality", "image")
    size = next((label for bound, label in SIZES if rows < bound), "n>1B")
    front = {"tags": ["datamark", "watermarked", "dataset-ownership-verification"],
             "task_categories": [f"{modality}-classification"], "size_categories": [size]}
    if dataset_name:
        front = {"pretty_name": dataset_name, **front}
    share = f" ({100 * marked / rows:.2g} %)" if rows else ""
    lines = ["---", *_yaml(front), "---", "", "## Watermark", "",
             f"{name[0].upper() + name[1:]} carries a dataset watermark made with "
             f"datamark (dataset ownership verification) so that its owner can show, from a model's answers "
             f"alone, whether the model was trained on it.", "",
             f"- **Commitment** (SHA-256 of the owner's secret key): `{summary['commitment']}`",
             f"- **Method**: {title} (`{method}`): {paper}",
             f"- **Changed rows**: {marked} of {rows}{share} {change}"
             + (f"; {decoys} more carry other random patterns with their labels unchanged" if decoys else "") + ".",
             f"- **Made**: {summary['created']} with datamark {summary['datamark_version']}", "",
             "### For users of this dataset", "",
             f"Which rows are marked, the pattern and the class(es) involved are secret. A model trained on "
             f"{name} behaves normally on ordinary inputs; it learns to respond to the secret pattern, which is "
             f"what the owner tests for. If you need unmodified data, ask the owner for the original release.", "",
             "### How an auditor verifies", "",
             "The owner (or an auditor the owner gives the key to) queries the suspect model as a black box on "
             "held-out examples with and without the secret pattern and runs the key's hypothesis test; the "
             "result states H0 and H1 and a p-value, and the test is built so that a model never trained on this "
             "data is accused with probability at most its significance level. The key is accepted only if its "
             "SHA-256 equals the commitment above, so it cannot have been made after the fact:", "",
             "```bash",
             f"datamark verify --key owner.key.json --commitment {summary['commitment']} \\",
             "    --model suspect.pt --data held-out-test-split      # or --endpoint URL for a served model",
             "```", ""]
    return "\n".join(lines)


def _yaml(mapping: dict[str, Any]) -> list[str]:
    """Flat YAML of strings and lists of strings; strings JSON-quoted (valid YAML whatever they contain)."""
    out = []
    for field, value in mapping.items():
        if isinstance(value, list):
            out += [f"{field}:", *(f"- {json.dumps(str(v))}" for v in value)]
        else:
            out.append(f"{field}: {json.dumps(str(value))}")
    return out
