"""Pick the post-processing thresholds on training images (never the validation split),
computing each image's probabilities once, at the size the service segments it at (a model
trained at one nucleus size sees most images resized), and re-running only the cheap
post-processing."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from nuclei import card as cards
from nuclei.postprocess import CONTACT, Thresholds, instances
from nuclei.segmenter import Segmenter
from training.data import Dataset, Sample
from training.metrics import dsb_score

log = logging.getLogger("training")
GRID = {
    "foreground": (0.4, 0.5, 0.6, 0.7),
    "seed": (0.5, 0.6, 0.7, 0.8),
    "boundary": (0.3, 0.5),
    "min_area": (10, 20),
}
CONTACT_GRID = (None, 0.4, 0.6)  # only for models with a contact channel
EROSION = (1, 2)  # px of seed erosion (`nuclei.postprocess.thinned`) tried on the grid's best


def grid(outputs: int) -> dict[str, tuple]:
    return {**GRID, "contact": CONTACT_GRID} if outputs > CONTACT else dict(GRID)


def tune(model: Path, data: str, images: int, seed: int) -> Thresholds:
    segmenter = Segmenter(model)
    dataset = Dataset(data)
    held_out = set(segmenter.card.training.validation_ids)
    pool = [i for i in dataset.ids if i not in held_out]
    rng = np.random.default_rng(seed)
    ids = sorted(rng.choice(pool, size=min(images, len(pool)), replace=False).tolist())
    return tune_on(segmenter, (dataset.load(i) for i in ids), "training split (validation ids excluded)")


def tune_on(segmenter: Segmenter, samples: Iterable[Sample], source: str) -> Thresholds:
    """The grid searched on `samples` (never held-out images), the best written into the
    model's card with `source` saying what they were."""
    cases = []
    for sample in samples:
        factor = segmenter.segment_sized(sample.image).factor  # the size the service segments it at
        cases.append((segmenter.probabilities(sample.image, factor=factor), sample.labels, factor))
    search = grid(len(segmenter.card.output.channels))

    def scored(candidate: Thresholds) -> tuple[float, Thresholds]:
        score = float(np.mean([dsb_score(lab, instances(p, candidate.at_scale(1 / f))) for p, lab, f in cases]))
        log.info("%s → %.4f", candidate, score)
        return score, candidate

    results = [scored(replace(segmenter.thresholds, seed_erosion=0, **dict(zip(search, values, strict=True))))
               for values in itertools.product(*search.values())]
    best_score, best = max(results, key=lambda r: r[0])
    # Seed erosion, tried on the best thresholds only: it pays where packed nuclei merge (H&E
    # tissue), elsewhere it cuts nuclei in two, and a full grid of it would triple the search.
    best_score, best = max([(best_score, best), *(scored(replace(best, seed_erosion=e)) for e in EROSION)],
                           key=lambda r: r[0])
    search = {**search, "seed_erosion": (0, *EROSION)}
    log.info("best on %d training images: %.4f with %s", len(cases), best_score, asdict(best))
    card = segmenter.card.model_copy(update={
        "postprocess": best,
        "postprocess_tuning": {"images": len(cases), "source": source, "grid": search,
                               "dsb_score": round(best_score, 4)},
    })
    cards.save(card, segmenter.model_path)
    return best
