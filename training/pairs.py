"""A lab's images and their labels, paired by name and read whole before any training starts:
a bad pair stops a fine-tune in one line that names the file, not an hour into the run.

Layouts (IMAGES, LABELS):

    IMAGES/a.png   LABELS/a.png | a.tif | a.tiff | a.geojson | a.json | a/ (mask images, or a/masks/)
                   also a_labels.*, a_label.*, a_mask.*, a_masks.* (CellProfiler and friends)
    DIR            DIR/images + DIR/labels (what `training subset` writes), or the Kaggle layout
                   DIR/<id>/images/<id>.png + DIR/<id>/masks/*.png, or labels beside the images
                   under the suffixed names above

Labels are read by `nuclei.labelio` (label images, mask folders, QuPath GeoJSON).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nuclei.imageio import ImageError, decode_image
from nuclei.labelio import GEOJSON_EXTENSIONS, LabelError, mask_files, read_labels
from nuclei.naming import IMAGE_EXTENSIONS, is_image, skipped
from training.data import Sample

LABEL_SUFFIXES = ("", "_labels", "_label", "_masks", "_mask")
LABEL_EXTENSIONS = (".png", ".tif", ".tiff", *GEOJSON_EXTENSIONS)
LOOKED_FOR = "{0}.png/.tif/.tiff/.geojson, {0}_labels.* (_label, _mask, _masks) or {0}/ (a folder of masks)"


class PairError(ValueError):
    """A file that cannot be trained on: `path: what is wrong`."""

    def __init__(self, path: Path, what: str):
        super().__init__(f"{path}: {what}")


@dataclass(frozen=True)
class Pair:
    name: str  # the image's stem: its name in reports and in the card
    image: Path
    labels: Path  # a file, or a folder of one mask image per nucleus

    def files(self) -> list[Path]:
        """Every file the pair is read from, in a fixed order (for `content_hash`)."""
        labels = mask_files(self.labels) if self.labels.is_dir() else [self.labels]
        return [self.image, *labels]


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _is_label_name(path: Path) -> bool:
    """Named like labels: a GeoJSON, or an image whose stem ends in a label suffix."""
    if path.suffix.lower() in GEOJSON_EXTENSIONS:
        return True
    return path.suffix.lower() in IMAGE_EXTENSIONS and _stem(path).lower().endswith(LABEL_SUFFIXES[1:])


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not skipped(p.name))


def folders(images: Path, labels: Path | None) -> tuple[Path, Path]:
    """(images folder, labels folder) of the command line's IMAGES [LABELS]."""
    if not images.is_dir():
        raise PairError(images, "no such folder")
    if labels is None:
        if (images / "images").is_dir() and (images / "labels").is_dir():
            return images / "images", images / "labels"
        return images, images
    if not labels.is_dir():
        raise PairError(labels, "no such folder")
    return images, labels


def kaggle_pairs(root: Path) -> list[Pair]:
    """<id>/images/<id>.png + <id>/masks/*.png, one image per id."""
    pairs = []
    for folder in (p for p in _entries(root) if (p / "images").is_dir()):
        images = [p for p in _entries(folder / "images") if is_image(p.name)]
        if len(images) != 1:
            raise PairError(folder / "images", f"{len(images)} images (the Kaggle layout has one per folder)")
        if not (folder / "masks").is_dir():
            raise PairError(images[0], f"no labels: expected one mask image per nucleus in {folder / 'masks'}")
        pairs.append(Pair(folder.name, images[0], folder / "masks"))
    return pairs


def named_pairs(images_dir: Path, labels_dir: Path) -> list[Pair]:
    """Each image with the one label file or mask folder named after it (see the module)."""
    same = images_dir.resolve() == labels_dir.resolve()
    images = [p for p in _entries(images_dir) if p.is_file() and is_image(p.name)
              and not (same and _is_label_name(p))]
    candidates = {p.name.lower(): p for p in _entries(labels_dir)
                  if p.is_dir() or p.suffix.lower() in LABEL_EXTENSIONS}
    pairs, claimed = [], set()
    for image in images:
        stem = _stem(image).lower()
        names = [(stem + s + e, e) for s in LABEL_SUFFIXES for e in ("", *LABEL_EXTENSIONS)]
        found = [candidates[n] for n, e in names  # no extension: a folder of masks; else a file
                 if n in candidates and candidates[n] != image and bool(e) != candidates[n].is_dir()]
        if not found:
            raise PairError(image, f"no labels: nothing in {labels_dir} named {LOOKED_FOR.format(_stem(image))}")
        if len(found) > 1:
            raise PairError(found[1], f"a second label file for {image.name} (also {found[0].name}): keep one")
        pairs.append(Pair(_stem(image), image, found[0]))
        claimed.add(found[0])
    stray = [p for p in candidates.values() if p not in claimed and (not same or p.is_dir() or _is_label_name(p))]
    if stray:
        raise PairError(stray[0], f"labels without an image: no {_stem(stray[0])}.png/.tif/… in {images_dir}")
    return pairs


def find_pairs(images: Path, labels: Path | None = None) -> list[Pair]:
    """The pairs of IMAGES [LABELS], by name; a folder without any is an error."""
    images_dir, labels_dir = folders(Path(images), Path(labels) if labels else None)
    kaggle = images_dir == labels_dir and any((p / "images").is_dir() for p in _entries(images_dir))
    pairs = kaggle_pairs(images_dir) if kaggle else named_pairs(images_dir, labels_dir)
    if not pairs:
        raise PairError(images_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)}) with labels")
    names = {}
    for pair in pairs:
        if pair.name.lower() in names:
            raise PairError(pair.image, f"two images named {pair.name} (also {names[pair.name.lower()].name})")
        names[pair.name.lower()] = pair.image
    return pairs


def load_pair(pair: Pair) -> Sample:
    """The decoded image and its labels, or PairError naming the file at fault."""
    data = pair.image.read_bytes()
    if not data:
        raise PairError(pair.image, "empty file")
    try:
        image = decode_image(data)
    except ImageError as exc:
        raise PairError(pair.image, f"not a readable image ({exc})") from exc
    try:
        labels = read_labels(pair.labels, image.shape[:2])
    except LabelError as exc:
        raise PairError(exc.path or pair.labels, str(exc)) from exc
    if not labels.any():
        raise PairError(pair.labels, "no nucleus in the labels (all background, 0)")
    return Sample(pair.name, image, labels)


def content_hash(pairs: Iterable[Pair]) -> str:
    """sha256 over the sorted names and bytes of every image and label file: which files a
    model learnt from, whatever folder they were in."""
    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p.name):
        for file in pair.files():
            digest.update(f"{pair.name}/{file.name}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()
