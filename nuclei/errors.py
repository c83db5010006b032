"""Input errors and the HTTP status each one means, in one table: the service answers with it,
and every wing that writes an error column (nuclei-client's summary.csv, nuclei-batch's
images.parquet, the web page's summary.csv) words the error the same way with `describe`:
`415 unrecognised file type: upload a PNG, JPEG, TIFF or BMP image`."""

from __future__ import annotations

from nuclei.bundle import FormatError
from nuclei.encode import TooManyNucleiError
from nuclei.imageio import ImageError, ImageTooLargeError, PlaneError, UnsupportedImageError
from nuclei.normalize import ChannelError
from nuclei.scale import DiameterError

STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (ImageTooLargeError, 413), (UnsupportedImageError, 415), (ChannelError, 415), (ImageError, 400),
    (TooManyNucleiError, 422), (PlaneError, 422), (DiameterError, 422), (FormatError, 422),
)
"""Most specific first: an ImageTooLargeError is an ImageError too."""
INPUT_ERRORS = tuple(kind for kind, _ in STATUSES)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an input error means; None for anything else."""
    return next((status for kind, status in STATUSES if isinstance(exc, kind)), None)


def error_text(status: int | None, detail: str) -> str:
    """The error column's words: `<status> <detail>`, or the detail alone without a status."""
    return f"{status} {detail}" if status else detail


def describe(exc: BaseException) -> str:
    """An exception as every error column words it; not an input error: `<Type>: <message>`."""
    status = status_of(exc)
    return error_text(status, str(exc)) if status else f"{type(exc).__name__}: {exc}"
