"""One large image, read lazily a region at a time: TIFF, BigTIFF, OME-TIFF (tiled or
striped, the full-resolution level of a pyramid) through tifffile's zarr store, or a zarr
array (an OME-Zarr's first level). Only the chunks a region touches are read and decoded,
so a worker never holds more than its block.

A `SlideSpec` is what travels to the workers (a path and how to read it); each worker
process opens the file once (`open_slide`, cached) and reads its blocks from it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from nuclei.planes import DEFAULT_CHANNEL, multichannel_warning, unravel

ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
MAX_CHUNK_BYTES = 256 << 20  # a strip or tile decoded whole for each block that touches it


class SlideError(ValueError):
    """A slide that cannot be read: unsupported layout, corrupt or truncated data."""


@dataclass(frozen=True)
class SlideSpec:
    path: str
    channel: int | None = None  # one channel of a multi-channel image, e.g. the DNA stain
    page: int = 0  # the Z/T plane of a stack, counted as nuclei.planes counts them


def is_zarr(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ZARR_MARKERS)


def is_tiff(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    except OSError:
        return False


def stem(path: str) -> str:
    """`slide.ome.tif` → `slide`: the name the outputs take."""
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".btf", ".svs"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


class Slide:
    """A 2-D image of height × width pixels (grey or up to 4 channels), read by region: the
    plane `spec.page` of a stack, and `spec.channel` of several, by the rule of nuclei.planes.
    A TIFF's C axis holds channels (channel 0 when none is chosen, with `warning`); a zarr
    array's (`colour_c`) may be RGB, read as colour as before."""

    def __init__(self, array: Any, axes: str, spec: SlideSpec, handle: Any = None, colour_c: bool = False) -> None:
        self._array = array
        self._handle = handle  # keeps the TIFF file open while the store is in use
        self.spec = spec
        axes = axes.upper()
        if "Y" not in axes or "X" not in axes:
            raise SlideError(f"expected an image with Y and X axes, got axes {axes!r}")
        index: list[Any] = []
        channel_axis = None
        self.warning: str | None = None
        planes = [int(n) for a, n in zip(axes, array.shape, strict=True) if a not in "YXSC" and n > 1]
        if not 0 <= spec.page < math.prod(planes):
            raise SlideError(f"--page {spec.page}: the image has {math.prod(planes)} plane(s) "
                             f"(0..{math.prod(planes) - 1}) of axes {axes!r}")
        position = iter(unravel(spec.page, tuple(planes)))
        for axis, size in zip(axes, array.shape, strict=True):
            if axis in "YX":
                index.append(slice(None))
            elif axis in "SC" and size > 1:
                if channel_axis is not None:
                    raise SlideError(f"two channel axes in {axes!r} of shape {array.shape}")
                channel_axis = axis
                if spec.channel is not None:
                    if not 0 <= spec.channel < size:
                        raise SlideError(f"--channel {spec.channel}: the image has {size} channels")
                    index.append(spec.channel)
                elif axis == "C" and not colour_c:
                    index.append(DEFAULT_CHANNEL)
                    self.warning = multichannel_warning(size, axes)
                else:
                    index.append(slice(None))
            elif size == 1:
                index.append(0)
            else:
                index.append(next(position))
        kept = [a for a, i in zip(axes, index, strict=True) if isinstance(i, slice)]
        self._index = index
        self._order = [kept.index(a) for a in ("Y", "X", channel_axis) if a is not None and a in kept]
        self.height = int(array.shape[axes.index("Y")])
        self.width = int(array.shape[axes.index("X")])
        self.dtype = np.dtype(array.dtype)
        chosen = spec.channel is not None or self.warning is not None
        channels = 1 if channel_axis is None or chosen else int(array.shape[axes.index(channel_axis)])
        if channels > 4:
            raise SlideError(f"{channels}-channel images are not supported (grey, RGB or RGBA); "
                             "pick the nuclear stain with --channel")
        self.channels = channels
        self._yx = (axes.index("Y"), axes.index("X"))

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1, columns x0:x1 → (h, w) or (h, w, channels), the file's dtype."""
        index = list(self._index)
        index[self._yx[0]] = slice(y0, y1)
        index[self._yx[1]] = slice(x0, x1)
        try:
            region = np.asarray(self._array[tuple(index)])
        except SlideError:
            raise
        except Exception as exc:  # codecs, zarr and tifffile raise many kinds for bad data
            raise SlideError(f"corrupt or truncated image data in pixels ({x0}, {y0})–({x1}, {y1}) "
                             f"({type(exc).__module__}.{type(exc).__name__}: {exc})".replace("\n", " ")) from exc
        if self._order != sorted(self._order):  # planar (channels first) → channels last
            region = np.ascontiguousarray(np.transpose(region, self._order))
        return region


class _Contiguous:
    """An uncompressed TIFF image stored in one piece (often one strip for the whole image):
    read with one positioned read per row of the region, neither decoded whole nor mapped
    into memory (mapped pages would count against the workers' memory)."""

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype, axes: str) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._offset, self._x = offset, axes.upper().index("X")
        self._fd = os.open(path, os.O_RDONLY)
        size = os.fstat(self._fd).st_size
        if offset + int(np.prod(shape)) * self.dtype.itemsize > size:
            raise SlideError(f"the TIFF is truncated: its pixels end past the file's {size} bytes")

    def __getitem__(self, index: tuple[Any, ...]) -> np.ndarray:
        x = self._x
        lead, trail = self.shape[:x], self.shape[x + 1 :]
        item = self.dtype.itemsize
        pixel = int(np.prod(trail, dtype=np.int64)) * item  # bytes of one X position
        x0, x1, _ = index[x].indices(self.shape[x])
        ranges = [range(*i.indices(n)) if isinstance(i, slice) else range(i, i + 1)
                  for i, n in zip(index[:x], lead, strict=True)]
        strides = [int(np.prod(self.shape[k + 1 :], dtype=np.int64)) * item for k in range(x)]
        out = np.empty((*[len(r) for r in ranges], x1 - x0, *trail), self.dtype)
        run = (x1 - x0) * pixel
        for position in np.ndindex(*[len(r) for r in ranges]):
            at = self._offset + x0 * pixel + sum(ranges[k][p] * strides[k] for k, p in enumerate(position))
            data = os.pread(self._fd, run, at)
            if len(data) != run:
                raise SlideError("the TIFF is truncated")
            out[position] = np.frombuffer(data, self.dtype).reshape(x1 - x0, *trail)
        squeeze = tuple(k for k, i in enumerate(index[:x]) if not isinstance(i, slice))
        out = out.squeeze(axis=squeeze) if squeeze else out
        return out[(Ellipsis, *index[x + 1 :])] if trail else out


def quiet_tifffile() -> None:
    """tifffile logs what it skips in a damaged file; the job reports the failure itself,
    in one line, when the pixels it needs cannot be read."""
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)


def _open_tiff(spec: SlideSpec) -> Slide:
    import tifffile
    import zarr

    quiet_tifffile()

    try:
        tif = tifffile.TiffFile(spec.path)
        series = tif.series[0]
        level = series.levels[0]
        page = level.keyframe
        axes = level.axes
        try:
            tifffile.TIFF.DECOMPRESSORS[page.compression]
        except KeyError:
            raise SlideError(f"{page.compression.name} compressed TIFF tiles need the imagecodecs package "
                             "(pip install imagecodecs)") from None
        if level.dataoffset is not None and page.compression == 1:
            array: Any = _Contiguous(spec.path, level.dataoffset, level.shape, level.dtype, axes)
        else:
            chunk = int(np.prod(page.chunks)) * np.dtype(page.dtype).itemsize
            if chunk > MAX_CHUNK_BYTES:
                raise SlideError(
                    f"the image is stored in {'tiles' if page.is_tiled else 'strips'} of {chunk >> 20} MB, "
                    "each decoded whole for every block that touches it; write it tiled "
                    "(e.g. tifffile.imwrite(…, tile=(512, 512)) or vips tiffsave --tile)")
            array = zarr.open(series.aszarr(level=0), mode="r")
            if isinstance(array, zarr.Group):  # some tifffile versions keep the multiscale group
                array = array["0"]
    except SlideError:
        raise
    except Exception as exc:  # tifffile raises many kinds for corrupt headers
        raise SlideError(f"not a readable TIFF: {type(exc).__name__}: {exc}".replace("\n", " ")) from exc
    return Slide(array, axes, spec, handle=tif)


def _open_zarr(spec: SlideSpec) -> Slide:
    import zarr

    try:
        node = zarr.open(spec.path, mode="r")
        axes = None
        if isinstance(node, zarr.Group):
            attrs = dict(node.attrs)
            multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
            if multiscales:
                first = multiscales[0]
                path = first["datasets"][0]["path"]
                if "axes" in first:
                    axes = "".join((a["name"] if isinstance(a, dict) else a)[0] for a in first["axes"])
            else:
                path = next(iter(sorted(node.array_keys())))
            node = node[path]
    except Exception as exc:
        raise SlideError(f"not a readable zarr array: {type(exc).__name__}: {exc}".replace("\n", " ")) from exc
    if axes is None:
        shape = node.shape
        if len(shape) == 2:
            axes = "YX"
        elif len(shape) == 3 and shape[2] <= 4:
            axes = "YXS"
        elif len(shape) == 3 and shape[0] <= 4:
            axes = "CYX"
        else:
            raise SlideError(f"cannot tell the axes of a zarr array of shape {shape}")
    return Slide(node, axes.upper(), spec, colour_c=True)


def open_slide(spec: SlideSpec) -> Slide:
    if is_zarr(spec.path):
        return _open_zarr(spec)
    if not os.path.exists(spec.path):
        raise SlideError("no such file")
    if not is_tiff(spec.path):
        raise SlideError("not a TIFF file or a zarr array")
    return _open_tiff(spec)


@lru_cache(maxsize=4)
def cached_slide(spec: SlideSpec) -> Slide:
    """One open slide per worker process and spec."""
    return open_slide(spec)
