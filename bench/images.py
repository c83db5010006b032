"""The images the benchmark runs on: real DSB2018 files of the common sizes, read from the
shared zip as the uploaded bytes; the repository's samples when the zip is absent.

Also the validation images with their labels, to score a variant with the DSB2018 metric.
(INT8 calibration crops come from training.quantize, the one implementation of quantisation.)
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from nuclei.imageio import decode_image, encode_png

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZIP = ROOT.parent / "shared" / "datasets" / "dsb2018" / "stage1_train.zip"
SAMPLES = ROOT / "samples"
SIZES = ((256, 256), (520, 696), (1024, 1024))


def size_key(height: int, width: int) -> str:
    return f"{height}x{width}"


@dataclass
class BenchImage:
    name: str  # DSB2018 image id (shortened) or sample file name
    data: bytes  # the file as uploaded (PNG)
    height: int
    width: int
    source: str  # "dsb2018" | "sample" | "synthetic (…)"

    @property
    def key(self) -> str:
        return size_key(self.height, self.width)

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _zip_images(zf: zipfile.ZipFile) -> dict[str, str]:
    """image id → member name of its image PNG."""
    out = {}
    for name in zf.namelist():
        parts = PurePosixPath(name).parts
        if len(parts) >= 3 and parts[-2] == "images" and parts[-1] == f"{parts[-3]}.png":
            out[parts[-3]] = name
    return out


def select_images(zip_path: Path | None, per_size: int, prefer: list[str]) -> tuple[dict[str, list[BenchImage]], str]:
    """Up to `per_size` images of each of SIZES, validation ids first, then by id.

    Returns the images by size key and a description of where they came from."""
    if zip_path is not None and zip_path.is_file():
        with zipfile.ZipFile(zip_path) as zf:
            members = _zip_images(zf)
            order = [i for i in prefer if i in members] + sorted(set(members) - set(prefer))
            chosen: dict[str, list[BenchImage]] = {size_key(*s): [] for s in SIZES}
            for image_id in order:
                with zf.open(members[image_id]) as f:
                    head = f.read(24)
                key = size_key(*_png_size(head))
                if key in chosen and len(chosen[key]) < per_size:
                    data = zf.read(members[image_id])
                    h, w = _png_size(data)
                    chosen[key].append(BenchImage(image_id[:10], data, h, w, "dsb2018"))
            if all(chosen.values()):
                return chosen, f"DSB2018 stage1_train ({zip_path.name}), {per_size} images per size"
    return _sample_images(per_size), "repository samples/ (DSB2018 zip absent)"


def _sample_images(per_size: int) -> dict[str, list[BenchImage]]:
    """Samples of the wanted sizes; sizes no sample has are mirror-padded from the largest."""
    files = sorted(SAMPLES.glob("*.png"))
    decoded = {p.stem: (p.read_bytes(), decode_image(p.read_bytes())) for p in files}
    out: dict[str, list[BenchImage]] = {}
    for height, width in SIZES:
        key = size_key(height, width)
        exact = [
            BenchImage(n, d, height, width, "sample")
            for n, (d, img) in decoded.items()
            if img.shape[:2] == (height, width)
        ]
        if exact:
            out[key] = exact[:per_size]
            continue
        name, (_, image) = max(decoded.items(), key=lambda kv: kv[1][1].shape[0] * kv[1][1].shape[1])
        reps = (-(-height // image.shape[0]), -(-width // image.shape[1]))
        big = np.pad(
            image,
            [(0, image.shape[0] * (reps[0] - 1)), (0, image.shape[1] * (reps[1] - 1))] + [(0, 0)] * (image.ndim - 2),
            mode="symmetric",
        )[:height, :width]
        if big.ndim == 3:  # encode_png writes BGR(A); keep the colours as decoded
            big = cv2.cvtColor(big, cv2.COLOR_RGBA2BGRA if big.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        out[key] = [BenchImage(f"{name}-mirrored", encode_png(big), height, width, f"synthetic (mirror-padded {name})")]
    return out


@dataclass
class Labelled:
    image_id: str
    image: np.ndarray
    labels: np.ndarray


def validation_set(zip_path: Path | None, ids: list[str], limit: int | None) -> tuple[list[Labelled], str]:
    """The model card's validation images with their instance labels (or the samples')."""
    if zip_path is not None and zip_path.is_file() and ids:
        from training.data import Dataset

        dataset = Dataset(zip_path)
        chosen = [i for i in ids if i in set(dataset.ids)]
        if limit is not None and limit < len(chosen):
            chosen = _stratified(dataset, chosen, limit)
        samples = [dataset.load(i) for i in chosen]
        what = f"validation split from the model card: {len(samples)} of {len(ids)} images"
        return [Labelled(s.image_id, s.image, s.labels) for s in samples], what
    out = []
    for path in sorted((SAMPLES / "labels").glob("*.png")):
        image = decode_image((SAMPLES / path.name).read_bytes())
        labels = decode_image(path.read_bytes()).astype(np.int32)
        out.append(Labelled(path.stem, image, labels))
    return out, f"repository samples with labels ({len(out)} images; DSB2018 zip absent)"


def _stratified(dataset, ids: list[str], limit: int) -> list[str]:
    """A fixed subset keeping the mix of image sizes (round-robin over sizes, by id)."""
    by_size: dict[tuple[int, int], list[str]] = {}
    with zipfile.ZipFile(dataset.path) as zf:
        members = _zip_images(zf)
        for image_id in sorted(ids):
            with zf.open(members[image_id]) as f:
                by_size.setdefault(_png_size(f.read(24)), []).append(image_id)
    picked: list[str] = []
    while len(picked) < limit:
        for group in by_size.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    return sorted(picked)


def read_card(model_path: Path) -> dict:
    return json.loads(model_path.with_suffix(".json").read_text())
