"""`make bench` (`python -m bench`): every measure of the service in one run, within 10 minutes
on 2 cores. Prints the tables, writes bench/results/latest.json and latest.md (`--quick`: tiny
counts, printed only). Each phase is bounded by repetitions and by seconds, so a loaded machine
gives fewer samples, not a longer run. The service's defaults are measured, whatever the shell's
MODEL_PATH, TILE_SIZE…: in-process with `Settings.model_construct`, over HTTP via `bench.server`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.config import Settings
from app.main import load_segmenter
from bench import anchors, inprocess, load, previous, throughput
from bench.images import bench_images, enlarged
from bench.report import render
from bench.server import ROOT, serve

MODES: dict[str, dict[str, Any]] = {  # counts and seconds per size (256², 520×696, 1024²)
    "full": {"reps": 12, "budget_s": (6, 12, 20), "float32_budget_s": (4, 8, 12), "keras_reps": 3, "keras_s": 10,
             "http_requests": (24, 10, 6), "http_s": 25, "startups": 3, "soak_requests": 300, "soak_s": 120,
             "client_images": 30},
    "quick": {"reps": 2, "budget_s": (0, 0, 0), "float32_budget_s": (0, 0, 0), "keras_reps": 2, "keras_s": 0,
              "http_requests": (4, 2, 2), "http_s": 10, "startups": 1, "soak_requests": 12, "soak_s": 20,
              "client_images": 3},
}


def log(t0: float, message: str) -> None:
    print(f"[{time.perf_counter() - t0:6.1f} s] {message}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, for trying the harness")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results; --quick: none)")
    args = parser.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    out_dir = args.out or (None if args.quick else ROOT / "bench" / "results")
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    images = bench_images()
    defaults = Settings.model_construct()
    served = load_segmenter(defaults)  # the service's default model and settings
    derived = (served.card.derived or {}).get("from")
    if not derived:
        raise SystemExit(f"{served.model_path.name} names no float32 source (card: derived.from)")
    float32 = load_segmenter(Settings.model_construct(model_path=served.model_path.parent / derived))
    segmenters = {"int8": served, "float32": float32}
    results: dict[str, Any] = {"served": "int8", "stages": list(inprocess.STAGES), "inprocess": {},
                               "models": {name: {"file": s.model_path.name, "version": s.card.version,
                                                 "sha256": s.card.sha256, "tile": s.inference.tile_size,
                                                 "overlap": s.inference.overlap, "batch": s.inference.batch_size}
                                          for name, s in segmenters.items()}}
    for name, segmenter in segmenters.items():
        budgets = mode["budget_s" if name == "int8" else "float32_budget_s"]
        results["inprocess"][name] = {}
        for image, budget in zip(images, budgets, strict=True):
            log(t0, f"in-process {name} {image.key}")
            results["inprocess"][name][image.key] = inprocess.measure(  # float32: no stages, to save time
                segmenter, image, defaults.max_pixels, mode["reps"], budget, stages=name == "int8")

    log(t0, f"served model against {previous.PREVIOUS['version']}: segment() side by side")
    with tempfile.TemporaryDirectory() as folder:
        before = load_segmenter(Settings.model_construct(model_path=previous.checkout_previous(Path(folder))))
        large = enlarged("fluorescence_256x256", 4)  # nuclei of ~70 px, shrunk for the model
        results["previous"] = previous.compare(served, before, [*images[1:], large], mode["reps"], mode["budget_s"][-1])
        del before

    log(t0, "anchors: matmul peak, FLOPs per pixel")
    results["peak"] = anchors.matmul_peak(threads=defaults.intra_op_threads)
    results["flop_per_pixel"] = anchors.flop_per_pixel(float32.model_path)
    log(t0, "anchor: Keras predict (child process)")
    inputs = {image.key: inprocess.model_input(float32, image) for image in images}
    reference = {key: float32.run_batch(x) for key, x in inputs.items()}
    results["keras"] = anchors.keras_predict(float32.card, float32.model_path.parent, inputs, reference,
                                             mode["keras_reps"], mode["keras_s"])
    del segmenters, served, float32  # the server below gets the cores and memory to itself

    log(t0, "HTTP: start-up to /ready")
    results["startup"] = load.startup({}, mode["startups"])
    results["http"] = []
    with serve({}) as server:
        for image, requests in zip(images, mode["http_requests"], strict=True):
            for concurrency in (1, 4):
                log(t0, f"HTTP {image.key} concurrency {concurrency}")
                results["http"].append(load.http_load(server, image, requests, concurrency, mode["http_s"]))
        log(t0, f"soak: up to {mode['soak_requests']} requests of {images[-1].key}")
        results["soak"] = load.soak(server, images[-1], mode["soak_requests"], 4, mode["soak_s"])
        log(t0, f"nuclei-client: {mode['client_images']} × {images[1].key}, labels + measurements")
        with tempfile.TemporaryDirectory() as folder:  # copies of one image: the same work each
            for k in range(mode["client_images"]):
                (Path(folder) / f"{k}.png").write_bytes(images[1].data)
            results["client"] = throughput.client_rates(Path(folder), mode["client_images"], server.url)

    results["meta"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
        "load_average": f"1 min: {load_start[0]:.2f} at start → {os.getloadavg()[0]:.2f} at end; "
                        f"5 and 15 min at end: {os.getloadavg()[1]:.2f}, {os.getloadavg()[2]:.2f}",
        "versions": f"python {platform.python_version()}, onnxruntime {ort.__version__}, numpy {np.__version__}",
        "settings": f"service defaults: INTRA_OP_THREADS={defaults.intra_op_threads}, "
                    f"INFERENCE_WORKERS={defaults.inference_workers}, QUEUE_DEPTH={defaults.queue_depth}",
    }
    report = render(results)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
        (out_dir / "latest.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
