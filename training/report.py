"""`evaluate`'s per-image rows summarised per modality (`nuclei.modality`).

One mean over the validation set is dominated by grey fluorescence; the per-modality rows
show where the model is weak, and the merge/split counts whether touching nuclei are the
cause there.
"""

from __future__ import annotations

import numpy as np

from nuclei.modality import MODALITIES

HEADLINE = ("dsb_score", "ap_50", "pixel_accuracy", "foreground_iou", "dice")
COUNTS = ("n_true", "n_pred", "merged", "split")  # summed over images, not averaged
ALL = "all"
COLUMNS = {
    "images": "images", "dsb_score": "DSB2018", "ap_50": "AP@0.5",
    "pixel_accuracy": "pixel accuracy", "foreground_iou": "foreground IoU", "dice": "Dice",
    "n_true": "true nuclei", "n_pred": "predicted nuclei", "merged": "merged", "split": "split",
}


def _summary(rows: list[dict], who: str) -> dict[str, float]:
    means = {k: round(float(np.mean([r[f"{who}_{k}"] for r in rows])), 4) for k in HEADLINE}
    sums = {k: int(sum(r[f"{who}_{k}"] for r in rows)) for k in COUNTS}
    return {"images": len(rows), **means, **sums}


def by_modality(rows: list[dict], who: str = "model") -> dict[str, dict[str, float]]:
    """Per modality present (in MODALITIES order), then ALL: image count, mean scores, and
    nucleus counts summed over the images (merged/split at IoU 0.5, `merges_and_splits`)."""
    groups = {m: [r for r in rows if r["modality"] == m] for m in MODALITIES}
    table = {m: _summary(group, who) for m, group in groups.items() if group}
    return table | {ALL: _summary(rows, who)}


def format_modality_table(table: dict[str, dict[str, float]]) -> str:
    """Markdown, the columns of COLUMNS: the format of docs/model.md."""
    lines = ["| modality | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in table.items():
        cells = [f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]) for k in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
