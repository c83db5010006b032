"""A trust signal for one segmentation: how well the model agrees with itself.

The image is segmented a second time flipped and transposed, at the same scale, and that
answer is mapped back and compared with the first: the mean instance F1 over IoU 0.50…0.95
(DSB2018's thresholds). 1.0: both passes found the same nuclei with the same outlines; an
image the model finds ambiguous (stained tissue, out-of-range sizes, clumps) gets two
different answers, and these are the images it gets wrong: on DSB2018's held-out validation
images the agreement ranks the images by their true score with Spearman 0.82, and the 12 of
60 below `THRESHOLD` (flagged `check`) score 0.320 on average against 0.640 for the rest
(docs/model.md, "Segmentation quality").

It costs one more pass of the model, so it is computed only when asked for (`quality=true`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nuclei.segmenter import Segmenter, Sized

THRESHOLD = 0.81
"""Agreement below which a result is flagged: the worst fifth of 300 training-split images fall
below it (`python -m training quality-study`, docs/model.md)."""
OK, CHECK = "ok", "check"
FLAGS = {OK: "the model agrees with itself: the result is probably good",
         CHECK: "the model disagrees with itself here: check this result, give diameter=, "
                "or fine-tune on images like it"}
"""The flag's one wording, for the page, the client, the batch tables and the docs."""
IOU_THRESHOLDS = np.arange(0.5, 1.0, 0.05)
HEADER, FLAG_HEADER = "X-Segmentation-Quality", "X-Segmentation-Flag"


@dataclass(frozen=True)
class Quality:
    score: float  # agreement in [0, 1]
    flag: str  # OK or CHECK

    @classmethod
    def of(cls, score: float) -> Quality:
        score = round(float(score), 3)
        return cls(score, CHECK if score < THRESHOLD else OK)

    def headers(self) -> dict[str, str]:
        return {HEADER: f"{self.score:.3f}", FLAG_HEADER: self.flag}

    def fields(self) -> dict[str, float | str]:
        """The two values as they appear in JSON documents and tables."""
        return {"quality": self.score, "flag": self.flag}


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Mean over IoU 0.50…0.95 of the instance F1 between two label images; 1.0 if both are
    empty. Symmetric, unlike DSB2018's score, since neither answer is the truth."""
    n, m = int(first.max(initial=0)), int(second.max(initial=0))
    if n == 0 and m == 0:
        return 1.0
    joint = np.bincount(first.ravel().astype(np.int64) * (m + 1) + second.ravel(),
                        minlength=(n + 1) * (m + 1)).reshape(n + 1, m + 1)
    inter = joint[1:, 1:]
    union = joint.sum(axis=1)[1:, None] + joint.sum(axis=0)[None, 1:] - inter
    iou = inter / np.maximum(union, 1)
    best = iou.max(axis=1, initial=0)  # matches at IoU > 0.5 are one-to-one
    tp = (best[:, None] > IOU_THRESHOLDS).sum(axis=0)
    return float(np.mean(2 * tp / (n + m)))


def flipped(array: np.ndarray) -> np.ndarray:
    """Rows reversed, then transposed (channels stay last): no tile, border or scan order of
    the first pass falls the same way again."""
    return np.swapaxes(array[::-1], 0, 1)


def unflipped(array: np.ndarray) -> np.ndarray:
    """The inverse of `flipped`."""
    return np.swapaxes(array, 0, 1)[::-1]


def assess(segmenter: Segmenter, image: np.ndarray, sized: Sized,
           threshold: float | None = None) -> Quality:
    """The agreement of `sized` (the answer for `image`) with a second pass on the image
    flipped and transposed, resized by the same factor."""
    # The diameter whose factor is exactly sized.factor (an estimated diameter, given back,
    # could resize differently: a given one is trusted even inside the trained range).
    diameter = segmenter.card.nucleus_scale.diameter / sized.factor
    second = segmenter.segment_sized(flipped(image), threshold, diameter).labels
    return Quality.of(agreement(sized.labels, unflipped(second)))
