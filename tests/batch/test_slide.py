"""nuclei-batch on one large image: a mosaic of real DSB2018 samples segmented block by
block matches each piece segmented alone, nuclei are stitched across seams (never cut,
never twice), one normalisation for the whole slide, the three outputs agree, and a
corrupt or truncated slide fails in one line with its partial files marked."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
import zarr
from dask.distributed import Client, LocalCluster
from fastapi.testclient import TestClient
from shapely.geometry import shape

from app.config import Settings
from app.main import create_app
from batch.cli import main, parse_args
from batch.slide import TILE, overview, wants_slide_mode
from batch.slideio import SlideSpec, open_slide
from batch.synthetic import dark_grey
from nuclei.big import MIRROR, anchored, block_result, segment_big
from nuclei.blocks import grid, owned
from nuclei.naming import MODEL_COLUMNS, columns_of_headers
from nuclei.normalize import normalize, normalize_with, statistics
from nuclei.postprocess import relabel
from nuclei.quality import THRESHOLD
from nuclei.scale import target
from nuclei.stitch import BlockLabels, Stitcher, pack
from tests.conftest import MODEL, ROOT, SAMPLE_NAMES, post, read_sample
from tests.models import add_model

BLOCK, OVERLAP = 512, 128  # small blocks: the 1.7k × 1.9k mosaic is cut into 16
GAP = 96  # background between pieces


def pieces() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The samples and their truth, each also turned and flipped: 8 real micrographs, brought
    to one intensity scale (as the fields of one slide share an exposure; `dark_grey`)."""
    images, truths = [], []
    for name in SAMPLE_NAMES:
        _, image, truth = read_sample(name)
        grey = dark_grey(image)
        # the piece's own normalisation is the identity, so alone or in the mosaic it is
        # scaled the same way
        assert np.array_equal(normalize(grey), np.repeat(grey[..., None] / np.float32(255), 3, axis=2))
        for turn in (lambda a: a, lambda a: np.rot90(a[::-1])):
            images.append(np.ascontiguousarray(turn(grey)))
            truths.append(np.ascontiguousarray(turn(truth)))
    return images, truths


def layout(shapes: list[tuple[int, int]], width: int) -> list[tuple[int, int]]:
    """Top-left corners on shelves, GAP apart. Offsets are multiples of 16, the network's
    stride (a U-Net with 4 poolings gives the same output for a piece moved by 16, not by
    5), and none is a multiple of the block size: the block seams run through the pieces."""
    places, x, y, shelf = [], GAP, GAP, 0
    for k, (h, w) in enumerate(shapes):
        if x + w > width - GAP:
            x, y, shelf = GAP + 16 * (k % 4), _up(y + shelf + GAP), 0
        places.append((y, x))
        x, shelf = _up(x + w + GAP), max(shelf, h)
    return places


def _up(value: int) -> int:
    value = -(-value // 16) * 16
    return value + 16 if value % BLOCK == 0 else value


def framed(piece: np.ndarray) -> np.ndarray:
    """A piece alone on a background margin as wide as the gaps, as it sits in the mosaic."""
    return np.pad(piece, GAP)


def matched(reference: np.ndarray, labels: np.ndarray, iou: float = 0.9) -> tuple[int, int]:
    """(nuclei of `reference` with an IoU ≥ `iou` partner in `labels`, nuclei of `reference`)."""
    good = 0
    ids = [k for k in np.unique(reference) if k]
    for k in ids:
        mask = reference == k
        hits = labels[mask]
        hits = hits[hits > 0]
        if hits.size:
            best = np.bincount(hits).argmax()
            other = labels == best
            inter = np.count_nonzero(mask & other)
            good += inter / (np.count_nonzero(mask) + np.count_nonzero(other) - inter) >= iou
    return int(good), len(ids)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory, segmenter) -> dict:
    images, truths = pieces()
    width = 1900
    places = layout([p.shape for p in images], width)
    height = max(y + p.shape[0] for (y, _), p in zip(places, images, strict=True)) + GAP
    canvas = np.zeros((height, width), np.uint8)
    owner = np.full((height, width), -1, np.int16)
    truth = np.zeros((height, width), np.int32)
    for k, ((y, x), piece) in enumerate(zip(places, images, strict=True)):
        h, w = piece.shape
        canvas[y : y + h, x : x + w] = piece
        owner[y : y + h, x : x + w] = k
        truth[y : y + h, x : x + w] = np.where(truths[k] > 0, truths[k] + truth.max(), 0)
    crossing = sum(y // BLOCK != (y + p.shape[0] - 1) // BLOCK or x // BLOCK != (x + p.shape[1] - 1) // BLOCK
                   for (y, x), p in zip(places, images, strict=True))
    assert crossing >= 6, "most pieces straddle a block seam"
    folder = tmp_path_factory.mktemp("slide")
    path = folder / "mosaic.ome.tif"
    tifffile.imwrite(path, canvas, tile=(256, 256), compression="zlib", metadata={"axes": "YX"})
    out = folder / "out"
    status = main([str(path), str(out), "--slide", "--block", str(BLOCK), "--overlap", str(OVERLAP),
                   "--workers", "2", "--quiet"])
    alone = [segmenter.segment(framed(p))[GAP:-GAP, GAP:-GAP] for p in images]
    return {"status": status, "out": out, "path": path, "canvas": canvas, "owner": owner, "truth": truth,
            "images": images, "places": places, "alone": alone,
            "labels": tifffile.imread(out / "mosaic.labels.ome.tif")}


def test_the_count_is_within_one_percent_of_the_pieces_segmented_alone(mosaic) -> None:
    assert mosaic["status"] == 0
    alone = sum(int(np.unique(a).size - 1) for a in mosaic["alone"])
    count = int(mosaic["labels"].max())
    assert abs(count - alone) <= 0.01 * alone, (count, alone)


def test_no_nucleus_spans_two_pieces(mosaic) -> None:
    labels, owner = mosaic["labels"].ravel(), mosaic["owner"].ravel()
    on_piece = (labels > 0) & (owner >= 0)
    pairs = np.unique(np.stack([labels[on_piece], owner[on_piece]]), axis=1)
    ids, pieces_per_id = np.unique(pairs[0], return_counts=True)
    assert pieces_per_id.max() == 1, ids[pieces_per_id > 1]


def test_each_piece_matches_its_alone_segmentation(mosaic) -> None:
    for k, ((y, x), piece) in enumerate(zip(mosaic["places"], mosaic["images"], strict=True)):
        h, w = piece.shape
        good, total = matched(mosaic["alone"][k], mosaic["labels"][y : y + h, x : x + w].astype(np.int64))
        assert good >= 0.98 * total, (k, good, total)


def test_blocks_stitch_into_the_one_pass_segmentation(mosaic, segmenter) -> None:
    whole = segmenter.segment(mosaic["canvas"])  # the mosaic in one pass, no blocks, no seams
    labels = mosaic["labels"].astype(np.int64)
    good, total = matched(whole, labels)
    assert abs(int(labels.max()) - total) <= 1 and good >= 0.99 * total, (good, total, labels.max())


def test_outputs_agree_nucleus_for_nucleus(mosaic) -> None:
    out, labels = mosaic["out"], mosaic["labels"]
    assert sorted(p.name for p in out.iterdir()) == [
        "blocks.parquet", "images.parquet", "mosaic.geojson", "mosaic.labels.ome.tif", "nuclei.parquet"]
    rows = pq.read_table(out / "nuclei.parquet").to_pylist()
    features = json.loads((out / "mosaic.geojson").read_text())["features"]
    count = int(labels.max())
    assert [r["id"] for r in rows] == list(range(1, count + 1)) == sorted(np.unique(labels)[1:].tolist())
    assert len(features) == count
    (image,) = pq.read_table(out / "images.parquet").to_pylist()
    assert (image["status"], image["count"], image["width"], image["height"]) == (
        "ok", count, labels.shape[1], labels.shape[0])
    # slide coordinates: each row's box and centroid are its nucleus' in the label image
    # (seam pixels claimed by a neighbouring core's own nucleus may move them a little)
    ids = labels.ravel()
    ys, xs = np.divmod(np.flatnonzero(ids), labels.shape[1])
    values = ids[ids > 0]
    area = np.bincount(values, minlength=count + 1)
    cx = np.bincount(values, weights=xs, minlength=count + 1) / np.maximum(area, 1)
    cy = np.bincount(values, weights=ys, minlength=count + 1) / np.maximum(area, 1)
    close = [abs(cx[r["id"]] - r["centroid_x"]) < 0.5 and abs(cy[r["id"]] - r["centroid_y"]) < 0.5 for r in rows]
    assert sum(close) >= 0.99 * count
    for feature, row in zip(features, rows, strict=True):
        geom = shape(feature["geometry"])
        assert geom.is_valid and geom.area >= row["area"]
        assert feature["properties"]["measurements"]["id"] == row["id"]
        assert feature["properties"]["objectType"] == "detection"
        minx, miny, _, _ = geom.bounds
        assert (minx, miny) == (row["bbox_x"], row["bbox_y"])


def test_a_slide_goes_to_the_model_its_overview_routes_to_as_the_service_routes_an_image(
        mosaic, tmp_path: Path) -> None:
    (grey,) = pq.read_table(mosaic["out"] / "images.parquet").to_pylist()
    assert (grey["model_name"], grey["model_route"]) == ("nuclei-unet.int8", "default")
    folder = tmp_path / "models"
    add_model(folder, "stained-tissue.int8", version="9.9.9", modalities=["colour tissue"])
    data, he, _ = read_sample("he_stained_256x320")
    slide = tmp_path / "stained.tif"
    tifffile.imwrite(slide, np.tile(he[..., :3], (2, 2, 1)), photometric="rgb")  # 512 × 640, colour
    out = tmp_path / "out"
    assert main([str(slide), str(out), "--slide", "--block", "256", "--overlap", "64", "--sample-pixels", "40000",
                 "--models-dir", str(folder), "--workers", "1", "--no-quality", "--quiet"]) == 0  # overview 1:3
    (row,) = pq.read_table(out / "images.parquet").to_pylist()
    with TestClient(create_app(Settings(model_path=MODEL, models_dir=folder))) as service:
        served = post(service, data).headers
    assert {c: row[c] for c in MODEL_COLUMNS} == columns_of_headers(served)
    assert (row["model_name"], row["model_version"], row["model_route"]) == (
        "stained-tissue.int8", "9.9.9", "modality: colour tissue")


def test_labels_are_a_tiled_compressed_uint32_ome_tiff(mosaic) -> None:
    path = mosaic["out"] / "mosaic.labels.ome.tif"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert tif.is_ome and tif.is_bigtiff
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (TILE, TILE)
        assert page.dtype == np.uint32 and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        ome = ET.fromstring(tif.ome_metadata)
    ns = {"ome": ome.tag.split("}")[0].strip("{")}
    pixels = ome.find("ome:Image/ome:Pixels", ns)
    height, width = mosaic["canvas"].shape
    assert (pixels.get("Type"), pixels.get("SizeX"), pixels.get("SizeY")) == ("uint32", str(width), str(height))


def test_one_normalisation_for_the_whole_slide() -> None:
    _, image, _ = read_sample("fluorescence_520x696")
    whole = normalize(image)
    low, high, invert = statistics(image)
    for y, x in [(0, 0), (100, 300), (400, 600)]:  # blocks scaled with the image's statistics
        block = image[y : y + 200, x : x + 200]
        assert np.array_equal(normalize_with(block, low, high, invert), whole[y : y + 200, x : x + 200])
    for name in SAMPLE_NAMES:  # normalize() is normalize_with() with the image's own statistics
        _, image, _ = read_sample(name)
        for variant in (image, image[..., 0], image.astype(np.uint16) * 257, image.astype(np.float32) / 7):
            assert np.array_equal(normalize_with(variant, *statistics(variant)), normalize(variant))
    rng = np.random.default_rng(3)  # slide samples are (n, 1, channels): histogram path == float path
    for _ in range(50):
        dtype = rng.choice([np.uint8, np.uint16])
        values = rng.integers(0, rng.integers(1, np.iinfo(dtype).max + 1), (rng.integers(1, 3000), 1, 3), dtype=dtype)
        for variant in (values, values[..., :1]):
            assert statistics(variant) == statistics(variant.astype(np.float64))


def test_slide_statistics_come_from_an_even_sample_of_the_whole_slide(mosaic) -> None:
    spec = SlideSpec(str(mosaic["path"]))
    height, width = mosaic["canvas"].shape
    args = parse_args([str(mosaic["path"]), "out", "--block", "700", "--sample-pixels", str(-(-height * width // 9))])
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        view, step = overview(args, client, spec, height, width, quiet=True)
    assert step == 3 and np.array_equal(view, mosaic["canvas"][::3, ::3]), "the slide every 3rd pixel, in place"
    assert statistics(view) == statistics(mosaic["canvas"]) == (0.0, 255.0, False)


def test_ownership_and_stitching_rebuild_the_truth_exactly(mosaic) -> None:
    """No network: each block's 'segmentation' is the truth seen through its reach. Every
    nucleus must come out once, whole, whatever the order the blocks arrive in."""
    truth = relabel(mosaic["truth"])
    height, width = truth.shape
    blocks = grid(height, width, 256, 64)  # 64 > the largest nucleus (56 px): 64 seams
    results = []
    for b in blocks:
        r = b.reach
        kept, count, cut = owned(relabel(truth[r.y0 : r.y1, r.x0 : r.x1]), b, height, width)
        assert cut == 0
        results.append(BlockLabels(b, count, *pack(b, kept, count, TILE)))
    random.Random(0).shuffle(results)
    stitcher = Stitcher(blocks, height, width, TILE, emit=lambda result, offset: None)
    for result in results:
        stitcher.add(result)
    tiles = iter(stitcher.tiles(lambda index: None))
    rows = []
    for _ in range(0, height, TILE):
        rows.append(np.concatenate([next(tiles) for _ in range(0, width, TILE)], axis=1))
    stitched = np.concatenate(rows)[:height, :width]
    assert stitcher.total == truth.max()
    assert np.array_equal(relabel(stitched.astype(np.int64)), truth)


@pytest.mark.parametrize("layout_", ["tiled", "striped", "one strip", "planar rgb", "pyramid", "zarr", "ome-zarr"])
def test_slides_are_read_by_region_in_every_layout(tmp_path: Path, layout_: str) -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (700, 900), dtype=np.uint8)
    rgb = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    path, expected = tmp_path / "slide.tif", grey
    if layout_ == "tiled":
        tifffile.imwrite(path, grey, tile=(128, 128), compression="zlib", bigtiff=True)
    elif layout_ == "striped":
        tifffile.imwrite(path, grey, rowsperstrip=16, compression="zlib")
    elif layout_ == "one strip":
        tifffile.imwrite(path, grey)  # uncompressed, one strip: read row by row
    elif layout_ == "planar rgb":
        tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), planarconfig="separate", tile=(128, 128))
        expected = rgb
    elif layout_ == "pyramid":
        with tifffile.TiffWriter(path := tmp_path / "slide.ome.tif") as tif:
            tif.write(rgb, tile=(128, 128), subifds=1, compression="zlib", metadata={"axes": "YXS"})
            tif.write(rgb[::2, ::2], tile=(128, 128), subfiletype=1, compression="zlib")
        expected = rgb
    elif layout_ == "zarr":
        path = tmp_path / "slide.zarr"
        zarr.create_array(path, shape=grey.shape, chunks=(128, 128), dtype=grey.dtype)[:] = grey
    else:
        path = tmp_path / "slide.ome.zarr"
        group = zarr.open_group(path, mode="w")
        group.attrs["multiscales"] = [{"axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}],
                                       "datasets": [{"path": "0"}]}]
        group.create_array("0", shape=(3, *grey.shape), chunks=(1, 128, 128), dtype=grey.dtype)[:] = \
            np.moveaxis(rgb, -1, 0)
        expected = rgb
    slide = open_slide(SlideSpec(str(path)))
    assert (slide.height, slide.width) == (700, 900)
    assert np.array_equal(slide.read(130, 610, 77, 901 - 1), expected[130:610, 77:900])
    if expected.ndim == 3:
        assert np.array_equal(open_slide(SlideSpec(str(path), channel=2)).read(5, 60, 7, 90), expected[5:60, 7:90, 2])
    assert wants_slide_mode(parse_args([str(path), "out", "--slide"]))


def test_only_large_or_flagged_tiffs_and_zarr_arrays_go_block_by_block(tmp_path: Path) -> None:
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((64, 64), np.uint8))
    assert not wants_slide_mode(parse_args([str(small), "out"]))
    assert wants_slide_mode(parse_args([str(small), "out", "--slide"]))
    assert wants_slide_mode(parse_args([str(small), "out", "--max-pixels", "1000"]))
    assert not wants_slide_mode(parse_args([str(tmp_path), "out"]))


def run_job(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "batch", *args, "--quiet", "--workers", "1"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_a_truncated_slide_fails_in_one_line_and_marks_what_it_wrote(mosaic, tmp_path: Path) -> None:
    data = mosaic["path"].read_bytes()
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(data[: len(data) * 6 // 10])
    # found by the statistics pass, or by a block: --range, and one model, so no overview to route by
    for extra in ([], ["--range", "0", "255", "--model", "nuclei-unet.int8"]):
        out = tmp_path / f"out{len(extra)}"
        job = run_job(str(cut), str(out), "--slide", "--block", str(BLOCK), *extra)
        assert job.returncode == 1
        assert len(job.stderr.strip().splitlines()) == 1, job.stderr
        assert "corrupt or truncated" in job.stderr
        names = sorted(p.name for p in out.iterdir())
        assert "INCOMPLETE" in names and "truncated" in (out / "INCOMPLETE").read_text()
        assert all(n == "INCOMPLETE" or n.endswith(".partial") for n in names), names
    assert any(n.endswith(".partial") for n in names), "the block pass had started writing"


def test_a_corrupt_header_fails_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    job = run_job(str(bad), str(tmp_path / "out"), "--slide")
    assert job.returncode == 1
    assert len(job.stderr.strip().splitlines()) == 1 and "bad.tif" in job.stderr, job.stderr


def test_the_big_image_core_without_dask_gives_the_dask_runs_labels(mosaic, segmenter) -> None:
    labels = segment_big(segmenter, mosaic["canvas"], block=BLOCK, overlap=OVERLAP)
    assert labels.dtype == np.uint32 and labels.max() > 0
    assert np.array_equal(labels, mosaic["labels"]), "nucleus for nucleus, id for id"


def test_blocks_are_anchored_so_the_segmenters_normalisation_leaves_them_as_they_are() -> None:
    rng = np.random.default_rng(5)
    real = [normalize(read_sample(name)[1]) for name in SAMPLE_NAMES]
    dense = [np.repeat(rng.random((h, w, 1), dtype=np.float32) ** power, 3, axis=2)  # mostly bright, too
             for h, w, power in [(64, 900, 0.05), (300, 40, 1.0), (1, 1, 0.2), (128, 128, 4.0)]]
    for block in real + dense:
        ready = anchored(block)
        assert np.array_equal(ready[: block.shape[0]], block)
        assert np.array_equal(normalize(ready), ready)
    for block in real:  # what it costs on real images: the mirrored rows and a few more
        assert anchored(block).shape[0] - block.shape[0] <= MIRROR + 8


def test_a_slide_diameter_twice_the_size_large_nuclei_are_brought_to_halves_the_slide(
        mosaic, segmenter, tmp_path: Path) -> None:
    canvas = mosaic["canvas"]
    height, width = canvas.shape
    double = cv2.resize(canvas, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    half = cv2.resize(double, (width, height), interpolation=cv2.INTER_AREA)
    for name, image in (("double", double), ("half", half)):
        tifffile.imwrite(tmp_path / f"{name}.tif", image, tile=(256, 256), compression="zlib")
    trained = segmenter.card.nucleus_scale.diameter
    top = target(float("inf"), segmenter.card.nucleus_scale)  # large nuclei are brought to this size
    assert main([str(tmp_path / "double.tif"), str(tmp_path / "out2"), "--slide", "--block", str(2 * BLOCK),
                 "--overlap", str(2 * OVERLAP), "--diameter", str(2 * top), "--workers", "2", "--quiet"]) == 0
    assert main([str(tmp_path / "half.tif"), str(tmp_path / "out1"), "--slide", "--block", str(BLOCK),
                 "--overlap", str(OVERLAP), "--workers", "2", "--quiet"]) == 0
    big = tifffile.imread(tmp_path / "out2" / "double.labels.ome.tif")
    small = tifffile.imread(tmp_path / "out1" / "half.labels.ome.tif")
    assert abs(int(big.max()) - int(small.max())) <= 0.02 * int(small.max()), (big.max(), small.max())
    shrunk = cv2.resize(big.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)
    good, total = matched(small.astype(np.int64), shrunk.astype(np.int64), iou=0.5)
    assert good >= 0.98 * total, (good, total)
    (row,) = pq.read_table(tmp_path / "out2" / "images.parquet").to_pylist()
    assert row["diameter"] == round(2 * top, 1) and row["count"] == big.max()
    (row,) = pq.read_table(tmp_path / "out1" / "images.parquet").to_pylist()
    assert 0.5 * trained < row["diameter"] < 2 * trained  # without --diameter: the nuclei's median


def test_every_block_has_its_quality_for_a_map_of_the_slides_doubtful_regions(mosaic, segmenter) -> None:
    blocks = pq.read_table(mosaic["out"] / "blocks.parquet").to_pylist()
    canvas = mosaic["canvas"]
    height, width = canvas.shape
    grid_ = grid(height, width, BLOCK, OVERLAP)
    assert [(r["index"], r["y0"], r["y1"], r["x0"], r["x1"]) for r in blocks] == [
        (b.index, b.core.y0, b.core.y1, b.core.x0, b.core.x1) for b in grid_]
    assert sum(r["count"] for r in blocks) == mosaic["labels"].max()
    for row, b in zip(blocks, grid_, strict=True):  # the value the big-image core gives that block
        r = b.reach
        *_, alone = block_result(segmenter, canvas[r.y0 : r.y1, r.x0 : r.x1], b, height, width,
                                 statistics(canvas), quality=True)
        assert (row["quality"], row["flag"]) == (alone.score, alone.flag), b.index
    assert len({r["quality"] for r in blocks}) > 1  # blocks differ: a map, not one number
    (slide,) = pq.read_table(mosaic["out"] / "images.parquet").to_pylist()
    areas = [(r["x1"] - r["x0"]) * (r["y1"] - r["y0"]) for r in blocks]
    assert slide["quality"] == round(float(np.average([r["quality"] for r in blocks], weights=areas)), 3)
    assert slide["flag"] == ("check" if slide["quality"] < THRESHOLD else "ok")


def test_a_stack_slide_reads_the_plane_and_channel_named_and_warns_without_a_channel(tmp_path: Path) -> None:
    """The rule of nuclei.planes for slides too: Z is a page, C a channel (channel 0 and a
    warning when none is chosen)."""
    from tests.channels import planes

    stack = np.stack([planes() + z for z in range(3)])  # Z, C, Y, X
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, stack, ome=True, metadata={"axes": "ZCYX"})
    slide = open_slide(SlideSpec(str(path), channel=1, page=2))
    assert slide.warning is None and np.array_equal(slide.read(0, 40, 0, 50), stack[2, 1, :40, :50])
    guessed = open_slide(SlideSpec(str(path)))
    assert np.array_equal(guessed.read(0, 40, 0, 50), stack[0, 0, :40, :50])
    assert "2 channels" in guessed.warning and "channel 0 was segmented" in guessed.warning
    with pytest.raises(Exception, match=r"--page 3: the image has 3 plane\(s\) \(0..2\)"):
        open_slide(SlideSpec(str(path), page=3))
    out = tmp_path / "out"
    assert run_job(str(path), str(out), "--slide", "--page", "1").returncode == 0
    (row,) = pq.read_table(out / "images.parquet").to_pylist()
    assert (row["path"], row["status"]) == ("stack.ome.tif", "ok") and "channel 0 was segmented" in row["warning"]
