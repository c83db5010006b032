"""`nuclei-batch IN OUT` for a folder of images: the chunks on the cluster, and results that
are never half-written and never done twice.

OUT/labels/<stem>.labels.png   one per image (stems: `nuclei.naming`), each written whole
OUT/parts.partial/             while the job runs: the finished images' rows, one pair of
                               Parquet files (images-K, nuclei-K) per `checkpoint` images,
                               each written whole
OUT/images.parquet, OUT/nuclei.parquet
                               written as `.partial` from the parts when every image is in,
                               then renamed; OUT/INCOMPLETE exists until then (batch.outputs)

A re-run (after a crash, or to add images) takes an image's rows from the last run that
segmented it, when that row says ok under the same output stem and its labels file exists,
and segments only the others: nothing is redone and nothing is lost.
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dask.distributed import Client, as_completed
from tqdm import tqdm

from batch.outputs import Outputs, write_whole
from batch.sources import chunks, find_images, output_names, relative
from batch.tables import IMAGES, NUCLEI, TableWriter
from batch.work import Job, labels_url, segment_files

PARTS = "parts.partial"


def _read(fs: fsspec.AbstractFileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


@dataclass
class Previous:
    """What earlier runs left: the sources of rows in the order they were written (OUT's
    tables, then each part), and which source holds each image's latest row."""

    fs: fsspec.AbstractFileSystem
    sources: list[tuple[str, str]] = field(default_factory=list)  # (images, nuclei) paths on fs
    latest: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # path → (source, row)
    next_part: int = 0

    def add(self, images: str, nuclei: str) -> None:
        table = _read(self.fs, images)
        if not set(IMAGES.names) <= set(table.column_names):
            return  # written by an older nuclei-batch (no model_name, …): its images are segmented again
        source = len(self.sources)
        self.sources.append((images, nuclei))
        for row in table.to_pylist():
            self.latest[row["path"]] = (source, row)


def previous(fs: fsspec.AbstractFileSystem, out: str) -> Previous:
    """`out`: OUT as a path on `fs`."""
    found = Previous(fs)
    if fs.exists(f"{out}/images.parquet") and fs.exists(f"{out}/nuclei.parquet"):
        found.add(f"{out}/images.parquet", f"{out}/nuclei.parquet")
    for images in sorted(fs.glob(f"{out}/{PARTS}/images-*.parquet")):
        nuclei = images.replace("/images-", "/nuclei-")
        if fs.exists(nuclei):
            found.add(images, nuclei)
        found.next_part = max(found.next_part, int(images.rsplit("-", 1)[1].split(".")[0]) + 1)
    return found


def _finished(row: dict[str, Any], stem: str, labels: str, fs: fsspec.AbstractFileSystem) -> bool:
    """An image whose latest row is ok, under the stem it has now, with its labels there."""
    return row["status"] == "ok" and row.get("output") == stem and fs.exists(fs._strip_protocol(labels))


def _parquet(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    return buffer.getvalue()


class Checkpoints:
    """Finished images' rows, written out as a pair of whole part files every `every` images."""

    def __init__(self, fs: fsspec.AbstractFileSystem, out: str, first: int, every: int) -> None:
        self.fs, self.out, self.number, self.every = fs, out, first, every
        self.images: list[dict[str, Any]] = []
        self.nuclei: list[dict[str, Any]] = []
        self.written: list[tuple[str, str]] = []

    def add(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.images.append(row)
        self.nuclei += rows
        if len(self.images) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.images:
            return
        images, nuclei = (f"{self.out}/{PARTS}/{kind}-{self.number:05d}.parquet" for kind in ("images", "nuclei"))
        write_whole(self.fs.unstrip_protocol(nuclei), _parquet(self.nuclei, NUCLEI))
        write_whole(self.fs.unstrip_protocol(images), _parquet(self.images, IMAGES))  # last: it has its nuclei
        self.written.append((images, nuclei))
        self.number += 1
        self.images, self.nuclei = [], []


def _merge(fs: fsspec.AbstractFileSystem, sources: list[tuple[str, str]], chosen: dict[str, int],
           outputs: Outputs) -> None:
    """Each image's rows from the source `chosen` for it → the .partial tables: images.parquet
    by path (one row an image fits in memory), nuclei.parquet streamed, each image's together."""
    nuclei = TableWriter(outputs.partial["nuclei"], NUCLEI)
    rows: list[pa.Table] = []
    for k, pair in enumerate(sources):
        paths = pa.array([p for p, source in chosen.items() if source == k], pa.string())
        if not len(paths):
            continue
        for path, writer in zip(pair, (None, nuclei), strict=True):
            with fs.open(path, "rb") as f:
                for batch in pq.ParquetFile(f).iter_batches():
                    table = pa.Table.from_batches([batch])
                    kept = table.filter(pc.is_in(table.column("path"), paths))
                    if writer is None:
                        rows.append(kept.select(IMAGES.names).cast(IMAGES))
                    else:
                        writer.write_table(kept.cast(writer.schema))
    images = TableWriter(outputs.partial["images"], IMAGES)
    images.write_table(pa.concat_tables([IMAGES.empty_table(), *rows]).sort_by("path"))
    images.close()
    nuclei.close()


def run_folder(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Client]) -> int:
    fs, root, paths = find_images(args.source)
    if not paths:
        print(f"nuclei-batch: no PNG/JPEG/TIFF/BMP images in {args.source}", file=sys.stderr)
        return 2
    base = args.out.rstrip("/")
    job = Job(routes=args.routes, out=base, source_root=root,
              max_pixels=args.max_pixels, threads=args.threads, diameter=args.diameter, quality=args.quality,
              page=args.page, channel=args.channel)
    names = output_names(paths, root)
    items = [(fs.unstrip_protocol(p), relative(p, root), names[p]) for p in paths]
    outputs = Outputs(base, {"images": "images.parquet", "nuclei": "nuclei.parquet"})
    out_fs, out = outputs.fs, outputs.fs._strip_protocol(base)
    before = previous(out_fs, out)
    chosen: dict[str, int] = {}
    todo = []
    for url, path, stem in items:
        source, row = before.latest.get(path, (None, None))
        if row is not None and _finished(row, stem, labels_url(job, stem), out_fs):
            chosen[path] = source
        else:
            todo.append((url, path, stem))
    outputs.started(args.source)
    checkpoints = Checkpoints(out_fs, out, before.next_part, args.checkpoint)
    failed = 0  # the images taken from earlier runs are ok
    if todo:
        with connect(args) as client, tqdm(total=len(todo), unit="img", disable=args.quiet) as bar:
            for row, rows in _segment(client, todo, job, args.chunk):
                failed += row["status"] != "ok"
                checkpoints.add(row, rows)
                bar.update()
                bar.set_postfix(failed=failed)
        checkpoints.flush()
    sources = before.sources + checkpoints.written
    chosen |= {path: len(before.sources) + k for k, (images, _) in enumerate(checkpoints.written)
               for path in _read(out_fs, images, ["path"]).column("path").to_pylist()}
    _merge(out_fs, sources, chosen, outputs)
    outputs.done()
    if out_fs.exists(f"{out}/{PARTS}"):
        out_fs.rm(f"{out}/{PARTS}", recursive=True)
    print(f"{len(items) - failed} of {len(items)} images segmented ({len(todo)} this run); results in {args.out}",
          file=sys.stderr)
    return 1 if failed else 0


def _segment(client: Client, items: list[tuple[str, str, str]], job: Job, chunk: int,
             ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(images row, nuclei rows) of every item, as they finish. A bounded window of tasks in
    flight: memory and scheduler load stay flat at 10⁶ images."""
    pending = iter(chunks(items, chunk))
    window = 4 * max(1, len(client.scheduler_info()["workers"]))
    running = as_completed([client.submit(segment_files, c, job, pure=False)
                            for c in itertools.islice(pending, window)])
    for future in running:
        yield from future.result()
        future.release()
        following = next(pending, None)
        if following is not None:
            running.add(client.submit(segment_files, following, job, pure=False))
