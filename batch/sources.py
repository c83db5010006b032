"""IN → the image files to segment: a folder (walked), a glob, or any fsspec URL
(`s3://bucket/plate1/`, `gs://…/*.tif`, `file://…`)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import PurePosixPath

import fsspec

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_image(path: str) -> bool:
    return path.lower().endswith(EXTENSIONS)


def find_images(source: str) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
    """The filesystem, the root that output names are relative to, and the sorted image
    paths of `source` (a folder, a glob or one file)."""
    fs, _, expanded = fsspec.get_fs_token_paths(source)
    if len(expanded) == 1 and fs.isdir(expanded[0]):
        root = expanded[0]
        return fs, root, sorted(p for p in fs.find(root) if is_image(p))
    paths = sorted(p for p in expanded if is_image(p) and fs.isfile(p))
    root = posixpath.commonpath([posixpath.dirname(p) for p in paths]) if paths else ""
    return fs, root, paths


def relative_name(path: str, source_root: str) -> str:
    """`path` below the input root, without its extension: the name its outputs take."""
    try:
        rel = PurePosixPath(path).relative_to(source_root)
    except ValueError:
        rel = PurePosixPath(PurePosixPath(path).name)
    return str(rel.with_suffix(""))


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
