"""Bytes ↔ arrays: where an uploaded image is decoded and a mask becomes a PNG.

Decoding reads the header first, so an image's size is known, and refused, before any
pixel is allocated: a 50 kB PNG can claim 100000×100000 pixels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from nuclei import tiff
from nuclei.planes import Location


class ImageError(ValueError):
    """An upload that is not a readable image (HTTP 400)."""


class UnsupportedImageError(ImageError):
    """A readable file of a kind we do not segment (HTTP 415)."""


class ImageTooLargeError(ImageError):
    """An image whose header claims more pixels than allowed (HTTP 413)."""


class PlaneError(ValueError):
    """A page or channel that the image does not have (HTTP 422)."""


@dataclass(frozen=True)
class ImageHeader:
    container: str  # png, jpeg, tiff or bmp: how the upload is packed, not the output format
    width: int
    height: int
    pages: int = 1
    location: Location | None = None  # a TIFF's plane: where page= and channel= fell (nuclei.planes)


@dataclass(frozen=True)
class Plane:
    """Which 2-D plane of the upload was segmented, and its pixel size when the file says."""

    page: int = 0
    pages: int = 1
    channel: int | None = None  # None: all channels (grey or colour, as normalisation reads them)
    channels: int = 1
    pixel_size_um: float | None = None
    warning: str | None = None  # several channels, none chosen: the one segmented is a guess

    def describe(self) -> str:
        """The X-Image-Plane header: `page=0/3; channel=all/2` (index / count)."""
        channel = "all" if self.channel is None else str(self.channel)
        return f"page={self.page}/{self.pages}; channel={channel}/{self.channels}"


def sniff_container(data: bytes) -> str:
    """The container format from the file's magic bytes, never from its name."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if not data:
        raise ImageError("the uploaded file is empty")
    raise UnsupportedImageError(
        "unrecognised file type: upload a PNG, JPEG, TIFF or BMP image"
    )


def read_header(data: bytes, page: int = 0, channel: int | None = None) -> ImageHeader:
    """Width and height (of the plane `page` and `channel` name, in a TIFF) from the header
    alone, without decoding pixels."""
    container = sniff_container(data)
    if container == "gif":
        raise UnsupportedImageError("GIF is not supported: upload a PNG, JPEG, TIFF or BMP image")
    if container != "tiff" and page != 0:
        raise PlaneError(f"page={page} is out of range: a {container.upper()} file has one page (0)")
    pages, location = 1, None
    try:
        if container == "tiff":
            width, height, location = _tiff_size(data, page, channel)
            pages = location.pages
        else:
            width, height = _HEADER_READERS[container](data)
    except (ImageError, PlaneError):
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise ImageError(f"the {container.upper()} header is truncated or corrupt") from exc
    if width <= 0 or height <= 0:
        raise ImageError(f"the {container.upper()} header claims an empty image ({width}×{height})")
    return ImageHeader(container, width, height, pages, location)


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos < len(data):
        while data[pos] != 0xFF:
            pos += 1
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return width, height
        pos += length
    raise ValueError("no SOF marker")


def _bmp_size(data: bytes) -> tuple[int, int]:
    (info_size,) = struct.unpack("<I", data[14:18])
    if info_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes, as OpenCV reads them
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)


def _tiff_size(data: bytes, page: int, channel: int | None) -> tuple[int, int, Location]:
    try:
        width, height, location, samples, depth, sample_bytes = tiff.page_header(data, page, channel)
    except tiff.TiffPageError as exc:
        raise PlaneError(str(exc)) from exc
    except Exception as exc:  # a corrupt IFD can raise TypeError, KeyError…, not only TiffFileError
        raise ValueError(f"unreadable TIFF header: {exc}") from exc
    # Refused here, not after decoding: 512 deflated samples per pixel fit a 1024×1024 page
    # in 0.5 MB and decode to 512 MB. Within these bounds a pixel takes at most 32 bytes.
    if samples > 4:
        raise UnsupportedImageError(f"{samples}-channel images are not supported (grey, RGB or RGBA only)")
    if depth > 1:
        raise UnsupportedImageError(f"volumetric TIFF pages ({depth} planes deep) are not supported")
    if sample_bytes > 8:
        raise UnsupportedImageError(f"TIFF samples of {sample_bytes} bytes are not supported (at most 64-bit)")
    return width, height, location


_HEADER_READERS = {"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size}


def decode_plane(
    data: bytes, max_pixels: int | None = None, page: int = 0, channel: int | None = None
) -> tuple[np.ndarray, Plane]:
    """File bytes → one plane as HxW or HxWxC (RGB order, original dtype), size-checked first:
    in a TIFF the plane `page` and `channel` name by its axes (`nuclei.planes`: several
    channels and none chosen → channel 0 and a warning); elsewhere `channel` alone (HxW)."""
    header = read_header(data, page, channel)
    pixels = header.width * header.height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageTooLargeError(
            f"image is {header.width}×{header.height} = {pixels} pixels; "
            f"the limit is {max_pixels} pixels"
        )
    if not _complete(header.container, data):
        raise ImageError(f"the {header.container.upper()} file is truncated (no end marker)")
    pixel_size = None
    if header.container == "tiff":
        image, pixel_size = _decode_tiff(data, page, channel)
    else:
        image = _decode_cv2(data)
    if image is None or image.size == 0:
        raise ImageError(f"the {header.container.upper()} data is truncated or corrupt")
    if image.shape[:2] != (header.height, header.width):
        raise ImageError("the image data does not match its header")
    where = header.location
    if where is not None:  # a TIFF: tiff.read_page read the plane its axes name
        if where.sample is not None and image.ndim == 3:  # OpenCV's fallback reads every sample
            image = image[..., where.sample]
        return image, Plane(page, where.pages, where.channel, where.channels, pixel_size, where.warning)
    channels = image.shape[2] if image.ndim == 3 else 1
    if channel is not None:
        if not 0 <= channel < channels:
            raise PlaneError(f"channel={channel} is out of range: the image has {channels} channel(s) "
                             f"(0..{channels - 1})")
        image = image[..., channel] if image.ndim == 3 else image
    return image, Plane(page, header.pages, channel, channels, pixel_size)


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """File bytes → HxW or HxWxC array (RGB order, original dtype) of the first plane."""
    return decode_plane(data, max_pixels)[0]


def _complete(container: str, data: bytes) -> bool:
    """OpenCV decodes a cut-off JPEG into a half-grey picture; refuse it instead."""
    if container == "png":
        return b"IEND" in data[-64:]
    if container == "jpeg":
        return data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    return True


def _decode_cv2(data: bytes) -> np.ndarray | None:
    """None when OpenCV cannot decode: most decoders return None, some raise cv2.error."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if image is not None and image.ndim == 3:
        order = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, order)
    return image


def _decode_tiff(data: bytes, page: int, channel: int | None) -> tuple[np.ndarray | None, float | None]:
    """A TIFF plane through `nuclei.tiff`; compressions tifffile cannot read without extra
    codecs go to OpenCV (first page only)."""
    try:
        image, pixel_size, _ = tiff.read_page(data, page, channel)
    except Exception as exc:  # tifffile raises many kinds for corrupt files
        image = _decode_cv2(data) if page == 0 else None
        if image is None:
            raise ImageError(f"the TIFF data is truncated or corrupt ({exc})") from exc
        return image, None
    if image.ndim > 3:
        raise UnsupportedImageError(f"TIFF pages of shape {image.shape} are not supported")
    return image, pixel_size


def encode_png(image: np.ndarray) -> bytes:
    """uint8 or uint16 HxW → PNG bytes (lossless, small: masks are mostly runs)."""
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
