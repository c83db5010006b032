"""Before/after on the images a fine-tune held out: each model through the service's own
pipeline (`nuclei.segmenter.Segmenter`, size estimate included), so the numbers are what a
request would get. Per image: DSB2018 score, AP@0.5, count error |predicted − true| / true and
true nuclei lost to merges (`training.metrics`)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nuclei.segmenter import Segmenter
from training.data import Sample
from training.metrics import score_image

log = logging.getLogger("training")
COLUMNS = {"dsb_score": "DSB2018", "ap_50": "AP@0.5", "count_error": "count error", "merged": "merged"}
LOWER_IS_BETTER = {"count_error", "merged"}


@dataclass(frozen=True)
class Scored:
    label: str  # how the table names it: "before float32", "after INT8", …
    model: Path
    rows: list[dict[str, float | str]]  # one per image

    @property
    def summary(self) -> dict[str, float]:
        """Means over images (merged: summed), as the card stores them."""
        means = {k: round(float(np.mean([r[k] for r in self.rows])), 4) for k in COLUMNS if k != "merged"}
        return {"images": len(self.rows), **means, "merged": int(sum(r["merged"] for r in self.rows))}


def score(label: str, model: Path, samples: Sequence[Sample]) -> Scored:
    segmenter = Segmenter(model)
    rows = []
    for sample in samples:
        found = score_image(sample.labels, segmenter.segment(sample.image))
        rows.append({"image": sample.image_id, "dsb_score": found.dsb_score, "ap_50": found.ap_50,
                     "count_error": abs(found.n_pred - found.n_true) / found.n_true,
                     "n_true": found.n_true, "n_pred": found.n_pred, "merged": found.merged})
    scored = Scored(label, model, rows)
    log.info("%s (%s) on %d held-out images: %s", label, model.name, len(rows), scored.summary)
    return scored


def table(scored: Sequence[Scored]) -> str:
    """Markdown: one row per model, the means over the held-out images."""
    lines = ["| model | file | " + " | ".join(COLUMNS.values()) + " |", "|---|---" + "|---" * len(COLUMNS) + "|"]
    for s in scored:
        values = s.summary
        cells = [f"{values[k]:.4f}" if k != "merged" else str(values[k]) for k in COLUMNS]
        lines.append(f"| {s.label} | {s.model.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, scored: Sequence[Scored]) -> None:
    """Every image's scores under every model: model label, file, then the image's row."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        keys = list(scored[0].rows[0])
        writer.writerow(["model", "file", *keys])
        for s in scored:
            writer.writerows([s.label, s.model.name, *(r[k] for k in keys)] for r in s.rows)
