"""`nuclei-batch SLIDE OUT`: one whole-slide or mosaic image (TIFF/BigTIFF/OME-TIFF or
zarr), segmented block by block on the Dask cluster, never whole in memory.

    1. statistics  every n-th pixel of the whole slide, an overview → the normalisation (or
                   --range), and the slide's model: routed once, by the service's rule, on that
                   overview (or, when a card claims a grey fluorescence size class, whose nuclei
                   the overview shrinks n times, on the slide's centre at full resolution)
    2. blocks      `batch.blocks.segment_block` per block, in parallel, a bounded window
                   of blocks in flight
    3. stitch      `nuclei.stitch.Stitcher`: label tiles in order, nuclei with slide ids

OUT/<stem>.labels.ome.tif   uint32 labels, tiled 512×512, deflate, written tile by tile
OUT/nuclei.parquet          one row per nucleus, slide coordinates
OUT/<stem>.geojson          QuPath detections, streamed feature by feature
OUT/images.parquet          the slide's row (size, count, time, quality), as for a folder of images
OUT/blocks.parquet          one row per block: its core's box, nuclei owned, quality and flag
                            (`nuclei.quality`), a map of the slide's doubtful regions

Each file is written as `<name>.partial` and renamed when the whole slide is done; the
file OUT/INCOMPLETE exists from the start until then and says what went wrong. A corrupt
or truncated slide stops the job with one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tifffile
from dask.distributed import as_completed
from tqdm import tqdm

from batch.blocks import BlockResult, Task, sample, segment_block, with_id
from batch.outputs import Outputs
from batch.slideio import Slide, SlideError, SlideSpec, is_tiff, is_zarr, open_slide, quiet_tifffile, stem
from batch.tables import BLOCKS, IMAGES, NUCLEI, TableWriter
from nuclei.big import TILE, check_blocks
from nuclei.blocks import grid
from nuclei.card import load as load_card
from nuclei.geojson import FeatureWriter
from nuclei.modality import FLUORESCENCE_LARGE, FLUORESCENCE_SMALL
from nuclei.naming import model_columns
from nuclei.normalize import statistics
from nuclei.quality import Quality
from nuclei.registry import Routes
from nuclei.scale import DiameterError, check
from nuclei.stitch import Stitcher

ROUTE_SIDE = 2048  # the slide's centre, read whole to route it when the nuclei's size decides


def wants_slide_mode(args: argparse.Namespace) -> bool:
    """A zarr array, or one TIFF given with --slide or larger than --max-pixels."""
    source = args.source
    if is_zarr(source):
        return True
    quiet_tifffile()
    if not (os.path.isfile(source) and is_tiff(source)):
        return False
    if args.slide:
        return True
    try:
        with tifffile.TiffFile(source) as tif:
            level = tif.series[0].levels[0]
            height, width = level.shape[level.axes.index("Y")], level.shape[level.axes.index("X")]
    except Exception:  # unreadable: the slide reader says why, with the one-line error
        return True
    return height * width > args.max_pixels


def overview(args: argparse.Namespace, client, spec: SlideSpec, height: int, width: int,
             quiet: bool) -> tuple[np.ndarray, int]:
    """(slide[::step, ::step], step): the slide every step-th pixel, at most --sample-pixels,
    read block by block on the cluster."""
    step = max(1, math.ceil(math.sqrt(height * width / args.sample_pixels)))
    boxes = [b.core for b in grid(height, width, args.block, 0)]
    futures = client.map(sample, [spec] * len(boxes), boxes, [step] * len(boxes), pure=False)
    order = {future.key: k for k, future in enumerate(futures)}
    parts: dict[int, np.ndarray] = {}
    with tqdm(total=len(boxes), unit="block", desc="statistics", disable=quiet) as bar:
        for future in as_completed(futures):
            parts[order[future.key]] = future.result()
            future.release()
            bar.update()
    columns = math.ceil(width / args.block)
    rows = [np.concatenate([parts[k] for k in range(i, i + columns)], axis=1) for i in range(0, len(boxes), columns)]
    return np.concatenate(rows, axis=0), step


def normalisation(args: argparse.Namespace, view: np.ndarray | None) -> tuple[float, float, bool]:
    """(low, high, invert) for the whole slide: --range, or its overview's."""
    if args.range is not None:
        return float(args.range[0]), float(args.range[1]), bool(args.invert)
    low, high, invert = statistics(view)
    return low, high, invert if args.invert is None else bool(args.invert)


def route(routes: Routes, view: np.ndarray | None, step: int, slide: Slide) -> tuple[Path, str]:
    """The slide's model and why, by the service's rule, once: on the overview, whose colour
    and median grey are the slide's; a grey fluorescence size class, claimed by a card, is
    judged on the slide's centre at full resolution instead (≤ ROUTE_SIDE², the nuclei at
    their size), since the overview shrinks the nuclei `step` times."""
    if step > 1 and routes.by_image and set(routes.claims) & {FLUORESCENCE_SMALL, FLUORESCENCE_LARGE}:
        height, width = slide.height, slide.width
        y0, x0 = max(0, (height - ROUTE_SIDE) // 2), max(0, (width - ROUTE_SIDE) // 2)
        view = slide.read(y0, min(height, y0 + ROUTE_SIDE), x0, min(width, x0 + ROUTE_SIDE))
    return routes.pick(view)


def _segment(args: argparse.Namespace, client, task: Task, outputs: Outputs, model_version: str,
             quiet: bool) -> tuple[int, int, int, float | None, list[dict]]:
    """Every block → the partial files. Returns (nuclei, blocks, nuclei cut at a block edge,
    their median equivalent diameter, the blocks' rows for blocks.parquet)."""
    blocks = grid(task.height, task.width, args.block, args.overlap)
    columns = math.ceil(task.width / args.block)
    workers = max(1, len(client.scheduler_info()["workers"]))
    # Blocks held or in flight: a tile row needs at most two rows of blocks (its own and
    # the next, for the nuclei of the next row that reach up into it).
    window = 2 * columns + 2 * workers + 2
    nuclei = pq.ParquetWriter(outputs.partial["nuclei"], NUCLEI)
    with nuclei, open(outputs.partial["geojson"], "w", encoding="utf-8", buffering=1 << 20) as geo_file:
        geojson = FeatureWriter(geo_file)

        cut, diameters, block_rows = 0, [], []

        def emit(result: BlockResult, offset: int) -> None:
            nonlocal cut
            cut += result.cut
            core = result.block.core
            block_rows.append({"index": result.block.index, "x0": core.x0, "y0": core.y0, "x1": core.x1,
                               "y1": core.y1, "count": result.count,
                               **(result.quality.fields() if result.quality else {})})
            if result.count:
                table = result.table
                ids = pc.add(table.column("id"), pa.scalar(offset, pa.int32()))
                nuclei.write_table(table.set_column(table.schema.get_field_index("id"), "id", ids))
                diameters.append(table.column("equivalent_diameter").to_numpy())
                for k, text in enumerate(result.features or ()):
                    geojson.write(with_id(text, offset + k + 1))
            result.table = result.features = None  # written: only the labels stay, for the tiles

        stitcher = Stitcher(blocks, task.height, task.width, TILE, emit)
        running = as_completed()
        submitted = 0
        bar = tqdm(total=len(blocks), unit="block", desc="segmenting", disable=quiet)

        def wait(index: int) -> None:
            """Until blocks 0..index are in; finished blocks are taken as they come, so
            their nuclei are written out and do not wait in the workers' memory."""
            nonlocal submitted
            while stitcher.emitted <= index or running.has_ready():
                limit = max(stitcher.lowest_held() + window, index + 1)
                while submitted < min(limit, len(blocks)):
                    running.add(client.submit(segment_block, blocks[submitted], task, pure=False,
                                              priority=len(blocks) - submitted))
                    submitted += 1
                future = next(running)
                result = future.result()  # a worker's error (a corrupt block) stops the job here
                future.release()
                stitcher.add(result)
                bar.update()
                bar.set_postfix(nuclei=stitcher.total, refresh=False)

        try:
            with tifffile.TiffWriter(outputs.partial["labels"], bigtiff=True, ome=True) as tiff:
                tiff.write(stitcher.tiles(wait), shape=(task.height, task.width), dtype=np.uint32,
                           tile=(TILE, TILE), compression="zlib", compressionargs={"level": 1},
                           maxworkers=1, metadata={"axes": "YX", "Name": f"{Path(task.slide.path).name} labels"},
                           software=f"nuclei-batch, model {model_version}")
        finally:
            bar.close()
        geojson.close()
    median = float(np.median(np.concatenate(diameters))) if diameters else None
    return stitcher.total, len(blocks), cut, median, block_rows


def slide_quality(block_rows: list[dict]) -> dict[str, float | str]:
    """The slide's `quality` and `flag`: its blocks' trust signals, weighted by their area."""
    rated = [r for r in block_rows if r.get("quality") is not None]
    if not rated:
        return {}
    areas = [(r["x1"] - r["x0"]) * (r["y1"] - r["y0"]) for r in rated]
    return Quality.of(np.average([r["quality"] for r in rated], weights=areas)).fields()


def run_slide(args: argparse.Namespace, connect) -> int:
    """The slide job; `connect(args)` gives the Dask client. Exit status 0 or 1."""
    for name in ("distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # one line on failure, not tracebacks
    start = time.perf_counter()
    routes: Routes = args.routes
    candidates = {path: load_card(path) for path in routes.files}  # the models the slide may go to
    try:
        for card in candidates.values():
            check_blocks(args.block, args.overlap, card.input.stride)
    except ValueError as exc:
        print(f"nuclei-batch: --block and --overlap: {exc}", file=sys.stderr)
        return 2
    if args.range is not None and not args.range[0] < args.range[1]:
        print("nuclei-batch: --range LOW HIGH needs LOW < HIGH", file=sys.stderr)
        return 2
    source = args.source
    spec = SlideSpec(os.path.abspath(source), args.channel, args.page)
    try:
        slide = open_slide(spec)
    except SlideError as exc:
        print(f"nuclei-batch: {source}: {exc}", file=sys.stderr)
        return 1
    height, width = slide.height, slide.width
    if args.diameter is not None:
        try:  # one factor for the whole slide, refused here rather than in every block
            for card in candidates.values():
                check(args.diameter, card.nucleus_scale, (height, width), None)
        except DiameterError as exc:
            print(f"nuclei-batch: --diameter: {exc}", file=sys.stderr)
            return 2
    name = stem(source)
    outputs = Outputs(args.out, {"labels": f"{name}.labels.ome.tif", "nuclei": "nuclei.parquet",
                                 "geojson": f"{name}.geojson", "images": "images.parquet",
                                 "blocks": "blocks.parquet"})
    outputs.started(source)
    try:
        with connect(args) as client:
            needed = args.range is None or routes.by_image
            view, step = overview(args, client, spec, height, width, args.quiet) if needed else (None, 1)
            low, high, invert = normalisation(args, view)
            model, why = route(routes, view, step, slide)
            card = candidates[model]
            task = Task(spec, str(model), args.threads, low, high, invert, height, width, TILE, args.diameter,
                        args.quality)
            del view
            count, blocks, cut, found, block_rows = _segment(args, client, task, outputs, card.version, args.quiet)
    except (Exception, KeyboardInterrupt) as exc:
        message = str(exc).replace("\n", " ") or type(exc).__name__
        if not isinstance(exc, SlideError | KeyboardInterrupt):
            message = f"{type(exc).__name__}: {message}"
        outputs.failed(source, message)
        print(f"nuclei-batch: {source}: {message}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    images = TableWriter(outputs.partial["images"], IMAGES)
    diameter = args.diameter or found  # the one given, or the median of the nuclei found
    images.write([{"path": os.path.basename(spec.path), "width": width, "height": height, "count": count,
                   "status": "ok", "warning": slide.warning or "",
                   "diameter": None if diameter is None else round(diameter, 1),
                   "error": "", "seconds": round(seconds, 3), "output": name, **model_columns(card.info, why),
                   **slide_quality(block_rows)}])
    images.close()
    table = TableWriter(outputs.partial["blocks"], BLOCKS)
    table.write(sorted(block_rows, key=lambda r: r["index"]))
    table.close()
    outputs.done()
    if cut:
        print(f"nuclei-batch: warning: {cut} nuclei reached the edge of their block's overlap and may be cut; "
              f"raise --overlap (now {args.overlap}) above twice the largest nucleus", file=sys.stderr)
    print(f"{count} nuclei in {width}×{height} pixels ({blocks} blocks, normalised {low:g}–{high:g}"
          f"{', inverted' if invert else ''}) in {seconds:.0f} s, {height * width / seconds / 1e6:.2f} MP/s; "
          f"results in {args.out}", file=sys.stderr)
    return 0

