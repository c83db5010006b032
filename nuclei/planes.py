"""Which stored plane `page=` and `channel=` mean, from the axes the file itself declares.

Fiji and OME writers store a channel as a page of its own and say so in their metadata
(axes `CYX`, `ZCYX`, `TCZYX` …). Counting pages would make `page=1` the second channel and
`channel=1` an error, so the rule reads the series' axes (as tifffile reports them):

    C          a channel, stored as samples of a page or as pages of their own
    Z, T, …    pages: `page=` counts them, C left out (row-major, as the file orders them)
    no axes    a plain multi-page TIFF (or one page per series) keeps the plain rule:
               `page=` is the page in the file, `channel=` a sample of it

An image of several channels that are not colour (C pages, or samples not marked RGB or
alpha) is segmented on channel 0 when no `channel=` is given, and says so (`warning`):
DAPI is as often in channel 1 as in channel 0, and a wrong guess looks like success.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CHANNEL_AXIS = "C"
DEFAULT_CHANNEL = 0
HEADER = "X-Image-Warning"  # the warning on the service's answer; a `warning` column elsewhere


class PlaneRangeError(ValueError):
    """A page or channel the image does not have (HTTP 422)."""


@dataclass(frozen=True)
class Location:
    """Where the asked plane is stored: page `index` of the series, and `sample` of that
    page (None: all of its samples); the counts `page=` and `channel=` range over."""

    index: int
    sample: int | None
    page: int
    pages: int
    channel: int | None
    channels: int
    warning: str | None = None


def multichannel_warning(channels: int, axes: str) -> str:
    """The one wording of the warning every wing shows (header, column, notice)."""
    where = f" (axes {axes})" if axes else ""
    return (f"the image has {channels} channels{where}: channel {DEFAULT_CHANNEL} was segmented; "
            f"choose the nuclear stain with channel=0..{channels - 1}")


def _check(name: str, value: int, count: int, hint: str = "") -> None:
    if not 0 <= value < count:
        raise PlaneRangeError(f"{name}={value} is out of range: the image has {count} {name}(s) "
                              f"(0..{count - 1}){hint}")


def locate(outer_axes: str, outer_shape: tuple[int, ...], samples: int, data_samples: bool,
           page: int, channel: int | None, axes: str = "") -> Location:
    """`outer_axes`/`outer_shape`: the series' axes above one page (`CZ`, `I`, or `` for one
    page); `samples`: per page; `data_samples`: whether those samples are separate channels
    rather than colour or alpha. `axes`: the series' axes, for the warning's wording."""
    if CHANNEL_AXIS in outer_axes:
        c = outer_axes.index(CHANNEL_AXIS)
        channels = outer_shape[c]
        page_shape = outer_shape[:c] + outer_shape[c + 1:]
        pages = math.prod(page_shape)
        _check("page", page, pages, f" and {channels} channel(s): a channel is chosen with channel=" if page else "")
        chosen = DEFAULT_CHANNEL if channel is None else channel
        _check("channel", chosen, channels)
        position = list(unravel(page, page_shape))
        position.insert(c, chosen)
        index = _ravel(position, outer_shape)
        warning = multichannel_warning(channels, axes) if channel is None and channels > 1 else None
        return Location(index, None, page, pages, chosen, channels, warning)
    pages = math.prod(outer_shape)
    _check("page", page, pages)
    if channel is not None:
        _check("channel", channel, samples)
        return Location(page, channel, page, pages, channel, samples)
    if data_samples and samples > 1:
        return Location(page, DEFAULT_CHANNEL, page, pages, DEFAULT_CHANNEL, samples,
                        multichannel_warning(samples, axes))
    return Location(page, None, page, pages, None, samples)


def unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The position of the `index`-th plane in an array of planes of `shape` (row-major)."""
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index //= size
    return tuple(reversed(out))


def _ravel(position: list[int], shape: tuple[int, ...]) -> int:
    index = 0
    for value, size in zip(position, shape, strict=True):
        index = index * size + value
    return index
