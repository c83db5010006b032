"""What every wing calls the files it writes for an input image, and which files it leaves
alone: one rule, so the client, the page's zip, `nuclei-batch` and a multi-format answer of
the service name the same outputs the same way.

    output stem   the input's path without its extension: `plate/a.png` → `plate/a`
    a clash       two inputs of one folder whose stems differ only in letter case or not at
                  all (`a.png` and `a.tif`, `A.png` and `a.png`) each keep their extension:
                  `a.png` → `a.png`, `a.tif` → `a.tif`, so `a.png.labels.png` and
                  `a.tif.labels.png`; names still equal after that take `~2`, `~3` … in
                  sorted order
    outputs       stem + `SUFFIXES[format]`
    skipped       hidden and system files and folders (`.DS_Store`, macOS `._a.png`,
                  `__MACOSX/`, `Thumbs.db`): they are never images to segment

The rule depends only on the names in the same folder, so a folder's outputs are named the
same way on every run, and a folder can be named without listing the whole tree.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping

from nuclei.encode import OutputFormat

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SUFFIXES = {
    OutputFormat.png: ".mask.png",
    OutputFormat.labels: ".labels.png",
    OutputFormat.rle: ".rle.json",
    OutputFormat.csv: ".submission.csv",
    OutputFormat.geojson: ".geojson",
    OutputFormat.measurements: ".measurements.csv",
    OutputFormat.preview: ".preview.png",
}
MODEL_FIELDS = ("name", "version", "sha256", "route")
"""What says which model answered an image and why (`route`: `requested`, `modality: colour
tissue`, `default`; nuclei.registry), named alike everywhere: the service's headers
`X-Model-Name`, `X-Model-Version`, `X-Model-Sha256`, `X-Model-Route` (`model_header`) and the
summary columns `model_name`, `model_version`, `model_sha256`, `model_route` (`model_column`)."""


def model_header(field: str) -> str:
    return f"X-Model-{field.capitalize()}"


def model_column(field: str) -> str:
    return f"model_{field}"


MODEL_COLUMNS = tuple(map(model_column, MODEL_FIELDS))


def _model_values(info: Mapping[str, str], route: str) -> dict[str, str]:
    return {f: route if f == "route" else info[f] for f in MODEL_FIELDS}


def model_columns(info: Mapping[str, str], route: str) -> dict[str, str]:
    """A model's card `info` (name, version, sha256) and its route → the summary's model columns."""
    return {model_column(f): value for f, value in _model_values(info, route).items()}


def model_headers(info: Mapping[str, str], route: str) -> dict[str, str]:
    """The same, as the service's response headers."""
    return {model_header(f): value for f, value in _model_values(info, route).items()}


def fields_of_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A response's model headers (any letter case) → {field: value}; "" for one missing."""
    lower = {k.lower(): v for k, v in headers.items()}
    return {f: lower.get(model_header(f).lower(), "") for f in MODEL_FIELDS}


def columns_of_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A response's model headers → the summary's model columns."""
    return {model_column(f): value for f, value in fields_of_headers(headers).items()}


SUMMARY_COLUMNS = ("path", "width", "height", "count", "diameter", "quality", "flag", "warning", "status", "error",
                   *MODEL_COLUMNS, "seconds", "output")
"""One row per image, in this order, rows sorted by `path` (the input's path below IN, '/'-separated):
summary.csv of nuclei-client and of the page's zip, images.parquet of nuclei-batch. `output`: the
stem its files were written under; `warning`: e.g. several channels and none chosen (nuclei.planes);
`model_*`: the model that answered and why (MODEL_FIELDS), empty where none did (an error)."""
SYSTEM_NAMES = {"__macosx", "thumbs.db", "desktop.ini", "$recycle.bin", "system volume information"}


def skipped(path: str) -> bool:
    """A hidden or system file, or one inside a hidden or system folder (relative path)."""
    return any((part.startswith(".") and part not in (".", "..")) or part.casefold() in SYSTEM_NAMES
               for part in path.replace("\\", "/").split("/"))


def is_image(path: str) -> bool:
    """An image file we segment: one of the extensions, and not a skipped file."""
    return path.lower().endswith(IMAGE_EXTENSIONS) and not skipped(path)


def _stem(name: str) -> str:
    root, extension = posixpath.splitext(name)
    return root if root and extension else name


def output_stems(paths: Iterable[str]) -> dict[str, str]:
    """Input paths (relative, '/'-separated) → their output stems, by the module's rule."""
    paths = sorted(dict.fromkeys(paths))
    first = {p: posixpath.join(posixpath.dirname(p), _stem(posixpath.basename(p))) for p in paths}
    groups: dict[str, list[str]] = {}
    for path, stem in first.items():
        groups.setdefault(stem.casefold(), []).append(path)
    stems = {p: (p if len(groups[first[p].casefold()]) > 1 else first[p]) for p in paths}
    wanted = {s.casefold() for s in stems.values()}
    used: set[str] = set()
    out = {}
    for path in paths:
        stem = candidate = stems[path]
        n = 1
        while candidate.casefold() in used or (n > 1 and candidate.casefold() in wanted):
            n += 1
            candidate = f"{stem}~{n}"
        used.add(candidate.casefold())
        out[path] = candidate
    return out


def output_name(stem: str, fmt: OutputFormat) -> str:
    return stem + SUFFIXES[fmt]
