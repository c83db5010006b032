"""`python -m training diameters`: the nucleus size the model was trained at, measured on the
training split only (the validation ids in the card stay unseen), and optionally written into
model cards as their `scale` section, which `nuclei.scale` rescales images to."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nuclei import card as cards
from nuclei.scale import Scale, median_diameter
from training.data import Dataset, DatasetError, split_ids

PERCENTILES = (10, 90)
AUGMENTED = (0.8, 1.25)
"""The trained range: the 10th to 90th percentile of the training images' diameters, widened
by the crop scales of the last training stages (`--augment light`). Inside it the image is
segmented as it is. Chosen from the training data alone: a narrower band picked on the
validation images (0.5-1.75× the median, 9.2-32 px) resized native images whose nuclei the
model handles (45-57 px), cost them 0.02-0.10 DSB each and the split 0.012 overall."""


def measure(dataset: Dataset, ids: list[str]) -> Scale:
    """Median over `ids` of each image's median nucleus equivalent diameter, with the range."""
    per_image = [median_diameter(dataset.load(i).labels) for i in ids]
    diameters = np.array([d for d in per_image if d is not None])
    diameter = round(float(np.median(diameters)), 1)
    p_low, p_high = np.percentile(diameters, PERCENTILES)
    return Scale(
        diameter=diameter, low=round(p_low * AUGMENTED[0], 1), high=round(p_high * AUGMENTED[1], 1),
        description=(
            f"median nucleus equivalent diameter (px): median over {len(diameters)} training-split "
            f"images of their median; low-high: their {PERCENTILES[0]}th-{PERCENTILES[1]}th percentile "
            f"({p_low:.1f}-{p_high:.1f}) times the training crops' scales {AUGMENTED[0]}-{AUGMENTED[1]}; "
            f"images whose nuclei fall outside are rescaled to `diameter`"))


def training_ids(dataset: Dataset, card: cards.ModelCard | None) -> list[str]:
    """The training split: the card's split (seed 2018, 10 %) minus every validation id."""
    held_out = set(card.training.validation_ids) if card else set()
    train, validation = split_ids(dataset.ids, 0.1, 2018)
    return [i for i in train if i not in held_out and i not in validation]


def diameters_command(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    models = [Path(m) for m in args.update_card]
    card = cards.load(models[0]) if models else None
    ids = training_ids(dataset, card)
    if not ids:
        raise DatasetError(f"no training-split images in {dataset.path}")
    scale = measure(dataset, ids)
    print(scale.model_dump_json(indent=2))
    for model in models:
        cards.save(cards.load(model).model_copy(update={"scale": scale}), model)
        print(f"wrote the scale section of {cards.card_path(model)}")
    return 0
