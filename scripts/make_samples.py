"""Copy a few validation images (CC0) and their instance labels into samples/.

Run once from the repository root: python scripts/make_samples.py [DSB2018 zip].
Images are from the model's validation split, so tests and README never show training data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from nuclei.imageio import encode_png
from training.data import Dataset

SAMPLES = {  # name: (image id prefix, crop as (y, x, height, width) or None)
    "fluorescence_256x256": ("0a7d30b252", None),
    "he_stained_256x320": ("24a20f2a52", None),
    "fluorescence_520x696": ("1b518cd2ea", None),
    "brightfield_320x320": ("c395870ad9", (352, 352, 320, 320)),
}


def main(zip_path: str) -> None:
    dataset = Dataset(zip_path)
    out = Path("samples")
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for name, (prefix, crop) in SAMPLES.items():
        (image_id,) = [i for i in dataset.ids if i.startswith(prefix)]
        sample = dataset.load(image_id)
        image, labels = sample.image, sample.labels
        if crop:
            y, x, h, w = crop
            image, labels = image[y : y + h, x : x + w], labels[y : y + h, x : x + w]
            kept = np.unique(labels[labels > 0])
            labels = np.searchsorted(kept, labels) + 1
            labels[sample.labels[y : y + h, x : x + w] == 0] = 0
        bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        (out / f"{name}.png").write_bytes(encode_png(bgr))
        (out / "labels" / f"{name}.png").write_bytes(encode_png(labels.astype(np.uint16)))
        (out / "labels" / f"{name}.id").write_text(image_id + "\n")
        print(name, image.shape, int(labels.max()), "nuclei")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/dsb2018/stage1_train.zip")
