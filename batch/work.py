"""What a Dask worker runs: files → decoded images → labels, measurements and a status row.

Each image goes to the model the service would answer it with (`Job.routes`, the service's
rule: nuclei.registry). Each worker process loads a model the first time an image goes to it
and keeps it (`segmenter_for`), with as many onnxruntime threads as the worker has task
threads, so workers do not fight over cores.
A bad file becomes an error row; it never fails the task, so one image cannot stop a job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fsspec

from batch.outputs import write_whole
from nuclei.encode import OutputFormat, labels_png
from nuclei.errors import INPUT_ERRORS, describe
from nuclei.imageio import decode_plane
from nuclei.measure import measure
from nuclei.naming import model_columns, output_name
from nuclei.quality import assess
from nuclei.registry import Routes
from nuclei.segmenter import Segmenter


@dataclass(frozen=True)
class Job:
    """Everything a task needs, small enough to ship with every task."""

    routes: Routes  # which model each image goes to (the service's routing, or --model)
    out: str  # folder or URL; labels go to OUT/labels/<stem>.labels.png
    source_root: str
    max_pixels: int
    threads: int = 1
    page: int = 0  # the plane of a TIFF, as POST /segment's page= (nuclei.planes)
    channel: int | None = None  # one channel, as POST /segment's channel=
    diameter: float | None = None  # median nucleus diameter, px, of every image; None: estimated per image
    quality: bool = True  # the trust signal per image (nuclei.quality): one more pass


@lru_cache(maxsize=8)  # ≥ the models a job can route to: the default and one per modality
def segmenter_for(model_path: str, threads: int) -> Segmenter:
    return Segmenter(model_path, intra_op_threads=threads, spinning=False)


def labels_url(job: Job, stem: str) -> str:
    return f"{job.out.rstrip('/')}/labels/{output_name(stem, OutputFormat.labels)}"


def segment_file(url: str, path: str, stem: str, job: Job) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One image at `url` → (its row for images.parquet, its rows for nuclei.parquet), both
    under its `path` below IN; its label image written whole under its output `stem`."""
    start = time.perf_counter()
    row: dict[str, Any] = {"path": path, "width": None, "height": None, "count": None, "diameter": None,
                           "warning": "", "status": "ok", "error": "", "output": stem}
    nuclei: list[dict[str, Any]] = []
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
        image, plane = decode_plane(data, max_pixels=job.max_pixels, page=job.page, channel=job.channel)
        row["warning"] = plane.warning or ""
        model, route = job.routes.pick(image)  # as the service routes the plane it segments
        segmenter = segmenter_for(str(model), job.threads)
        sized = segmenter.segment_sized(image, diameter=job.diameter, max_pixels=job.max_pixels)
        labels = sized.labels
        write_whole(labels_url(job, stem), labels_png(labels))
        nuclei = [{"path": path, **m} for m in measure(labels, image)]
        row.update(height=int(labels.shape[0]), width=int(labels.shape[1]), count=len(nuclei),
                   diameter=round(sized.diameter, 1), **model_columns(segmenter.info, route))
        if job.quality:
            row.update(assess(segmenter, image, sized).fields())
    except (*INPUT_ERRORS, OSError) as exc:  # worded as the service and the client word it
        row.update(status="error", error=describe(exc))  # no model answered: its columns stay null
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row, nuclei


def segment_files(items: list[tuple[str, str, str]], job: Job) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """A chunk of (url, path, stem): one task per chunk keeps the scheduler light at 10⁶ images."""
    return [segment_file(url, path, stem, job) for url, path, stem in items]
