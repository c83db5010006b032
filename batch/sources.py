"""IN → the image files to segment: a folder (walked), a glob, or any fsspec URL
(`s3://bucket/plate1/`, `gs://…/*.tif`, `file://…`), and the names their outputs take
(`nuclei.naming`: hidden and system files skipped, one stem per image)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import PurePosixPath

import fsspec

from nuclei.naming import is_image, output_stems


def find_images(source: str) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
    """The filesystem, the root that output names are relative to, and the sorted image
    paths of `source` (a folder, a glob or one file)."""
    fs, _, expanded = fsspec.get_fs_token_paths(source)
    if len(expanded) == 1 and fs.isdir(expanded[0]):
        root = expanded[0]
        return fs, root, sorted(p for p in fs.find(root) if is_image(relative(p, root)))
    files = [p for p in expanded if fs.isfile(p)]
    root = posixpath.commonpath([posixpath.dirname(p) for p in files]) if files else ""
    return fs, root, sorted(p for p in files if is_image(relative(p, root)))


def relative(path: str, root: str) -> str:
    """`path` below `root`, '/'-separated: the `path` column of images.parquet and nuclei.parquet,
    as summary.csv has it."""
    try:
        return str(PurePosixPath(path).relative_to(root))
    except ValueError:
        return PurePosixPath(path).name


def output_names(paths: list[str], source_root: str) -> dict[str, str]:
    """Each path → the stem its outputs take below OUT (`nuclei.naming.output_stems` of the
    paths below the input root)."""
    below = {p: relative(p, source_root) for p in paths}
    stems = output_stems(below.values())
    return {p: stems[rel] for p, rel in below.items()}


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
