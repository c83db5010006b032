"""`nuclei-batch IN OUT`: segment every image under IN on a Dask cluster and write
OUT/images.parquet, OUT/nuclei.parquet and OUT/labels/ (batch.folder: written as .partial
with an INCOMPLETE marker until the job is done; a re-run segments only what is not done).
Exit status 0 when every image succeeded, 1 when any failed, 2 for bad arguments.

`nuclei-batch SLIDE OUT`: one whole-slide or mosaic image (a TIFF larger than --max-pixels
or given with --slide, or a zarr array) is segmented block by block on the same cluster and
stitched: OUT/<stem>.labels.ome.tif, OUT/nuclei.parquet, OUT/<stem>.geojson, OUT/blocks.parquet
(batch.slide).

Each image goes to the model the service would answer it with: the model whose card claims
the image's modality among the models of --models-dir, else the default model (MODEL_PATH),
by the service's own rule (nuclei.registry); --model NAME|PATH sends every image to one model.
images.parquet says which model answered each image and why (model_name, model_version,
model_sha256, model_route: the service's X-Model-* headers)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dask.distributed import Client, LocalCluster

from batch.folder import run_folder
from batch.slide import run_slide, wants_slide_mode
from nuclei import card as cards
from nuclei.card import CardError
from nuclei.registry import Registry, Routes, UnknownModel, resolve
from nuclei.segmenter import Segmenter

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "nuclei-unet.int8.onnx"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nuclei-batch", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", metavar="IN", help="folder, glob or fsspec URL of PNG/JPEG/TIFF/BMP images")
    p.add_argument("out", metavar="OUT", help="folder or fsspec URL for the results")
    p.add_argument("--model",
                   help="one model for every image: an ONNX model with its card beside it, or a model's name in "
                        "--models-dir (the service's names: GET /models); default: each image goes to the model "
                        "the service would pick (a card claiming its modality, else the default model)")
    p.add_argument("--models-dir", type=Path,
                   help="the models served, as the service's MODELS_DIR (env MODELS_DIR; default: the default "
                        "model's folder); the default model is the service's too: env MODEL_PATH, else "
                        f"{DEFAULT_MODEL.relative_to(DEFAULT_MODEL.parent.parent)} of this checkout")
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                   help="tcp://host:8786 of a running cluster (env DASK_SCHEDULER_ADDRESS); "
                        "default: a LocalCluster with one single-threaded worker per core")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="LocalCluster workers")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker task")
    p.add_argument("--chunk", type=int, default=8, help="images per Dask task")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, help="larger images are error rows")
    p.add_argument("--diameter", type=float, help="median nucleus diameter (px) of every image; default: "
                   "estimated per image, as POST /segment does (column 'diameter' of images.parquet)")
    p.add_argument("--checkpoint", type=int, default=500,
                   help="finished images per part file: a crash loses at most this many images' work")
    p.add_argument("--page", type=int, default=0, help="plane of each TIFF, as POST /segment's page=: "
                   "a Z/T plane by the file's axes (OME, ImageJ), else its page")
    p.add_argument("--channel", type=int, help="channel of every image (the nuclear stain, 0-based), stored as "
                   "samples or as pages; default: channel 0 of several, with a warning column in images.parquet")
    p.add_argument("--no-quality", dest="quality", action="store_false",
                   help="skip the trust signal (images.parquet's quality and flag; a slide's blocks.parquet): "
                        "one model pass less per image or block")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    slide = p.add_argument_group("one large image (whole slide, mosaic), segmented block by block")
    slide.add_argument("--slide", action="store_true",
                       help="segment a single TIFF block by block even when it is under --max-pixels")
    slide.add_argument("--block", type=int, default=2560,
                       help="side of the square blocks the slide is cut into (multiple of 16)")
    slide.add_argument("--overlap", type=int, default=128,
                       help="pixels each block is read beyond its edges, more than twice the largest nucleus")
    slide.add_argument("--range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="normalise every block between these grey levels instead of the slide's "
                            "1st and 99.8th percentiles")
    slide.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                       help="bright background (brightfield, H&E): invert; default: decided from the slide's "
                            "median, or no with --range")
    slide.add_argument("--sample-pixels", type=int, default=1 << 22,
                       help="pixels sampled evenly over the slide for its normalisation statistics")
    args = p.parse_args(argv)
    args.default_model = Path(os.environ.get("MODEL_PATH") or DEFAULT_MODEL)
    args.models_dir = args.models_dir or Path(os.environ.get("MODELS_DIR") or args.default_model.parent)
    if args.model is not None:
        try:
            args.model = str(resolve(args.model, args.models_dir))
        except UnknownModel as exc:
            p.error(f"--model: {exc} (in {args.models_dir})")
    return args


def routes(args: argparse.Namespace) -> Routes:
    """Which model each image goes to: --model for all, else the service's routing over
    --models-dir. Every model is loaded here once, as the service loads it (card, sha256,
    ONNX, warm-up), so a broken one is refused with one log line, as the service refuses it,
    and the workers load only the models their images go to. CardError: no default model."""
    if args.model is not None:
        cards.load(Path(args.model))  # the card and the sha256, here rather than in every worker
        return Routes(Path(args.model).resolve(), requested=True)
    registry = Registry(args.models_dir, args.default_model,
                        load=lambda path: Segmenter(path, intra_op_threads=1, spinning=False))
    registry.refresh()
    return registry.routes()


def connect(args: argparse.Namespace, silence_logs: int = logging.WARNING, dashboard_address: str | None = None,
            ) -> Client:
    if args.scheduler:
        return Client(args.scheduler)
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=dashboard_address, processes=True, silence_logs=silence_logs)
    return Client(cluster)


def run(args: argparse.Namespace) -> int:
    try:
        args.routes = routes(args)
    except CardError as exc:
        print(f"nuclei-batch: model: {exc}", file=sys.stderr)
        return 2
    if wants_slide_mode(args):
        # quiet workers, and an HTTP port of its own: a failure is one line on stderr
        return run_slide(args, lambda a: connect(a, silence_logs=logging.CRITICAL, dashboard_address="127.0.0.1:0"))
    return run_folder(args, connect)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
