"""Score an ONNX model through the service's own pipeline (`nuclei.segmenter.Segmenter`), next
to the Otsu baseline on the same images, overall and per modality (`training.report`)."""

from __future__ import annotations

import argparse
import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nuclei import card as cards
from nuclei.modality import LARGE_NUCLEUS_DIAMETER, modality
from nuclei.segmenter import Segmenter
from training.baseline import otsu_instances
from training.data import Dataset, DatasetError
from training.metrics import score_image
from training.report import HEADLINE, by_modality, format_modality_table
from training.scaled import scale_command

log = logging.getLogger("training")


def evaluate(segmenter: Segmenter, dataset: Dataset, ids: list[str]) -> list[dict]:
    """Per-image scores of the model and of the baseline."""
    rows = []
    for n, image_id in enumerate(ids, start=1):
        sample = dataset.load(image_id)
        start = time.perf_counter()
        pred = segmenter.segment(sample.image)
        seconds = time.perf_counter() - start
        model = score_image(sample.labels, pred)
        base = score_image(sample.labels, otsu_instances(sample.image))
        rows.append({
            "image_id": image_id, "height": sample.image.shape[0], "width": sample.image.shape[1],
            "modality": modality(sample.image, sample.labels), "seconds": round(seconds, 3),
            **{f"model_{k}": v for k, v in asdict(model).items()},
            **{f"otsu_{k}": v for k, v in asdict(base).items()},
        })
        log.info("%3d/%d %s model %.3f otsu %.3f", n, len(ids), image_id[:12],
                 model.dsb_score, base.dsb_score)
    return rows


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Means over images (the DSB2018 score is averaged per image, as on Kaggle)."""
    return {
        who: {k: round(float(np.mean([r[f"{who}_{k}"] for r in rows])), 4) for k in HEADLINE}
        for who in ("model", "otsu")
    }


def resolve_ids(spec: str, segmenter: Segmenter, dataset: Dataset) -> list[str]:
    validation = segmenter.card.training.validation_ids
    if spec == "validation":
        ids = validation
    elif spec == "training":
        held_out = set(validation)
        ids = [i for i in dataset.ids if i not in held_out]
    elif spec == "all":
        ids = dataset.ids
    else:
        ids = Path(spec).read_text().split()
    missing = sorted(set(ids) - set(dataset.ids))
    if missing:
        raise DatasetError(f"{len(missing)} requested ids are not in {dataset.path}, e.g. {missing[0]}")
    return ids


def format_table(summary: dict[str, dict[str, float]]) -> str:
    keys = list(summary["model"])
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    names = {"model": "U-Net (ONNX, service pipeline)", "otsu": "Otsu + connected components"}
    for who, scores in summary.items():
        lines.append(f"| {names[who]} | " + " | ".join(f"{scores[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)


def evaluate_command(args: argparse.Namespace) -> int:
    segmenter = Segmenter(args.model)
    dataset = Dataset(args.data)
    ids = resolve_ids(args.ids, segmenter, dataset)
    if getattr(args, "scale", None):
        return scale_command(segmenter, dataset, ids, args.scale)
    rows = evaluate(segmenter, dataset, ids)
    summary = summarize(rows)
    modalities = by_modality(rows)
    print(f"\n{len(rows)} images ({args.ids})\n" + format_table(summary))
    print("\nU-Net per modality (merged, split: true nuclei lost at IoU 0.5)\n"
          + format_modality_table(modalities))
    if args.report:
        with open(args.report, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.update_card:
        metrics = {
            "split": args.ids, "images": len(rows), "sha256": segmenter.card.sha256,
            "inference": segmenter.inference.model_dump(by_alias=True),
            "command": f"python -m training evaluate --model {args.model} --ids {args.ids}",
            "model": summary["model"], "baseline_otsu": summary["otsu"],
            "by_modality": modalities, "large_nucleus_diameter_px": LARGE_NUCLEUS_DIAMETER,
            "seconds_per_image_mean": round(float(np.mean([r["seconds"] for r in rows])), 3),
        }
        cards.save(segmenter.card.model_copy(update={"metrics": metrics}), Path(args.model))
    return 0
