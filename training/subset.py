"""`python -m training subset --split training|validation --out DIR`: DSB2018 images of one
family (a modality, a size) in the fine-tune's layout, DIR/images/ID.png (the file as stored)
and DIR/labels/ID.png (16-bit label image), with DIR/subset.json saying what was chosen.

The split is the served model's (its card's `training.validation_ids`, the seeded split it
was trained and scored on), and `--split` has no default: a specialist must never train on a
validation image, and `training finetune` refuses one in IMAGES by name as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from nuclei import card as cards
from nuclei.card import CardError
from nuclei.imageio import encode_png
from nuclei.modality import MODALITIES, modality
from training.data import Dataset, DatasetError

log = logging.getLogger("training")


def add_parser(sub: argparse._SubParsersAction, data: str, model: str) -> None:
    s = sub.add_parser("subset", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="DSB2018 images of one family → DIR/images + DIR/labels, for `finetune`")
    s.add_argument("--split", choices=("training", "validation"), required=True,
                   help="the served model's split: train on 'training', score on 'validation' (--val)")
    s.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    s.add_argument("--modality", action="append", choices=MODALITIES, help="keep images of this kind (repeatable)")
    s.add_argument("--size", help="keep images of this size, HxW (e.g. 256x320)")
    s.add_argument("--limit", type=int, default=0, help="at most this many images (0: all), in id order")
    s.add_argument("--data", default=data, help="DSB2018 zip or folder (Kaggle layout)")
    s.add_argument("--model", type=Path, default=Path(model), help="the model whose split is used")


def parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise DatasetError(f"--size {text}: expected HxW, e.g. 256x320") from exc
    return height, width


def split_of(dataset: Dataset, model: Path, split: str) -> list[str]:
    """The ids of one half of the model's split, in id order."""
    validation = set(cards.load(model).training.validation_ids)
    return [i for i in dataset.ids if (i in validation) == (split == "validation")]


def subset(args: argparse.Namespace) -> list[str]:
    """Write the chosen images and labels; their ids."""
    if args.out.exists() and any(args.out.iterdir()):
        raise DatasetError(f"{args.out}: not empty (a subset goes into a new or empty folder)")
    size = parse_size(args.size)
    dataset = Dataset(args.data)
    ids = [i for i in split_of(dataset, args.model, args.split) if size is None or dataset.size(i) == size]
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "labels").mkdir()
    chosen = []
    for image_id in ids:
        sample = dataset.load(image_id)
        if args.modality and modality(sample.image, sample.labels) not in args.modality:
            continue
        (args.out / "images" / f"{image_id}.png").write_bytes(dataset.image_bytes(image_id))
        (args.out / "labels" / f"{image_id}.png").write_bytes(encode_png(sample.labels.astype("uint16")))
        chosen.append(image_id)
        if len(chosen) == args.limit:
            break
    manifest = {"split": args.split, "model": args.model.name, "model_sha256": cards.load(args.model).sha256,
                "data": str(args.data), "modality": args.modality, "size": args.size, "ids": chosen}
    (args.out / "subset.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("%d %s-split images → %s", len(chosen), args.split, args.out)
    return chosen


def subset_command(args: argparse.Namespace) -> int:
    try:
        chosen = subset(args)
    except (DatasetError, CardError) as exc:
        print(f"subset: {exc}", file=sys.stderr)
        return 2
    if not chosen:
        print(f"subset: no {args.split}-split image matches", file=sys.stderr)
        return 2
    print(f"{len(chosen)} images in {args.out}/images, labels in {args.out}/labels")
    return 0
