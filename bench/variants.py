"""Variants of the service's inference, each run through `nuclei.segmenter.Segmenter` exactly as
the service would run it, timed and scored with the DSB2018 metric on the validation split.

A variant is a setting the service already exposes (INTRA_OP_THREADS, INTER_OP_THREADS,
TILE_SIZE, MODEL_PATH) or a Segmenter argument (graph optimisation level), or another model
file: the graph optimised offline by onnxruntime, or the default's other-precision sibling (the
float32 model an INT8 default was quantised from, or an INT8 model made from a float32 default
by training.quantize).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from nuclei.segmenter import Segmenter, card_path
from bench.images import ROOT, Labelled
from bench.stats import repeat, summarize
from training.metrics import dsb_score
from training.quantize import derived_card

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass
class Variant:
    name: str
    setting: str  # how to make it the default, exactly
    model_path: Path
    intra_op_threads: int
    inter_op_threads: int
    optimization: str = "all"
    tile: int | None = None
    note: str = ""
    batch_size: int | None = None  # the card's inference.batch_size when None
    session_options: dict[str, Any] = field(default_factory=dict)  # SessionOptions Segmenter does not expose
    kind: str = "options"  # what it changes: model, tile, batch, threads, options (combinations mix kinds)
    result: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        return {
            "model_path": str(self.model_path),
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "optimization": self.optimization,
            "tile": self.tile,
            "batch_size": self.batch_size,
            "session_options": self.session_options,
        }

    def segmenter(self) -> Segmenter:
        return build_segmenter(self.spec())


def build_segmenter(spec: dict[str, Any]) -> Segmenter:
    """Segmenter exactly as the service builds it, then the two things it has no argument for:
    extra SessionOptions (the session is rebuilt with them) and the tile batch size."""
    segmenter = Segmenter(
        spec["model_path"],
        intra_op_threads=spec["intra_op_threads"],
        inter_op_threads=spec["inter_op_threads"],
        optimization=spec["optimization"],
        tile=spec["tile"],
    )
    if spec.get("session_options"):
        options = ort.SessionOptions()
        options.intra_op_num_threads = spec["intra_op_threads"]
        options.inter_op_num_threads = spec["inter_op_threads"]
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = LEVELS[spec["optimization"]]
        for name, value in spec["session_options"].items():
            setattr(options, name, value)
        segmenter.session = ort.InferenceSession(spec["model_path"], options, providers=["CPUExecutionProvider"])
    if spec.get("batch_size"):
        segmenter.inference = replace(segmenter.inference, batch_size=spec["batch_size"])
    return segmenter


def memory_probe(
    spec: dict[str, Any], image_files: list[Path], repeats: int, workdir: Path, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Resident memory of a fresh process that builds this variant's Segmenter and runs the
    service's request function on the given images (`bench/memprobe.py`)."""
    job = workdir / "memprobe.json"
    job.write_text(json.dumps({"spec": spec, "images": [str(p) for p in image_files], "repeats": repeats}))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.memprobe", str(job)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def optimize_offline(model_path: Path, out: Path, threads: int) -> dict[str, Any]:
    """Let onnxruntime apply all its graph optimisations once and save the result, so the
    service can load it with optimisation disabled (hardware-specific: NCHWc layouts). Its card
    is made the way training makes any derived model's card."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.optimized_model_filepath = str(out)
    t0 = time.perf_counter()
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    seconds = time.perf_counter() - t0
    card = derived_card(model_path, out, {"how": "onnxruntime ORT_ENABLE_ALL, saved"})
    card_path(out).write_text(json.dumps(card, indent=2) + "\n")
    return {"seconds": round(seconds, 2), "bytes": out.stat().st_size}


def measure(
    variant: Variant,
    speed_images: dict[str, list[np.ndarray]],
    validation: list[Labelled],
    baseline_labels: list[np.ndarray] | None,
    *,
    reps: int,
    budget_s: float,
    probe: tuple[list[Path], int, Path] | None = None,
) -> dict[str, Any]:
    """Session creation, segment() time per size, the DSB2018 score on `validation`, and
    (with `probe` = image files, rounds, work dir) the memory of a fresh process running it."""
    t0 = time.perf_counter()
    segmenter = variant.segmenter()
    create_s = time.perf_counter() - t0
    segmenter.warm_up()
    speed = {}
    for key, images in speed_images.items():
        times = repeat(
            lambda i, images=images: segmenter.segment(images[i % len(images)]),
            min_reps=min(3, reps),
            max_reps=reps,
            budget_s=budget_s,
            warmup=1,
        )
        speed[key] = summarize(times)
    scores, labels_out, same = [], [], 0
    t0 = time.perf_counter()
    for k, sample in enumerate(validation):
        pred = segmenter.segment(sample.image)
        scores.append(dsb_score(sample.labels, pred))
        labels_out.append(pred)
        if baseline_labels is not None and np.array_equal(pred, baseline_labels[k]):
            same += 1
    validation_s = time.perf_counter() - t0
    result = {
        "session_create_s": round(create_s, 3),
        "tile": segmenter.inference.tile,
        "speed": speed,
        "median_sum_ms": round(sum(s["median_ms"] for s in speed.values()), 2),
        "dsb_score": round(float(np.mean(scores)), 4) if scores else None,
        "validation_images": len(scores),
        "validation_s": round(validation_s, 2),
        "validation_ms_per_image": round(validation_s / max(1, len(scores)) * 1e3, 1),
    }
    if baseline_labels is not None:
        result["identical_labels"] = f"{same}/{len(validation)}"
    if probe is not None:
        result["memory"] = memory_probe(variant.spec(), *probe)
    variant.result = result
    result["_labels"] = labels_out
    return result


def decide(
    baseline: dict[str, Any],
    results: list[Variant],
    max_drop: float = 0.01,
    min_gain: float = 0.05,
    rss_limit_mb: float = 500.0,
) -> None:
    """The issue's rule: faster and a DSB2018 score at most `max_drop` lower. 'Faster' is
    the sum over the three sizes of the median segment() time, lower by at least `min_gain`
    (smaller differences are within run-to-run noise on a shared 2-core machine). A variant
    whose process peaks above `rss_limit_mb` while serving 1024×1024 requests would trade target 5
    for speed: it is flagged and not recommended."""
    base_time, base_score = baseline["median_sum_ms"], baseline["dsb_score"]
    for v in results:
        r = v.result
        r["speedup"] = round(base_time / r["median_sum_ms"], 3) if r["median_sum_ms"] else None
        r["score_delta"] = (
            round(r["dsb_score"] - base_score, 4) if r.get("dsb_score") is not None and base_score is not None else None
        )
        faster = r["median_sum_ms"] <= (1 - min_gain) * base_time
        accurate = r["score_delta"] is not None and r["score_delta"] >= -max_drop
        rss = r.get("memory", {}).get("peak_rss_mb")
        memory_ok = rss is None or rss <= rss_limit_mb
        r["faster"] = bool(faster)
        r["score_ok"] = bool(accurate)
        r["memory_ok"] = bool(memory_ok)
        r["qualifies"] = bool(faster and accurate)
        r["recommendable"] = bool(faster and accurate and memory_ok)


def profile_ops(
    model_path: Path, x: np.ndarray, *, intra: int, inter: int, optimization: str, workdir: Path, runs: int = 3
) -> dict[str, Any]:
    """onnxruntime's profiler on `runs` runs of one input: time by op type (first run dropped)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    options.graph_optimization_level = LEVELS[optimization]
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / f"ort_profile_{model_path.stem}_{x.shape[1]}x{x.shape[2]}")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    walls = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        walls.append(time.perf_counter() - t0)
    path = Path(session.end_profiling())
    events = json.loads(path.read_text())
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_end = runs_seen[0]["ts"] + runs_seen[0]["dur"] if runs_seen else -1
    by_op: dict[str, float] = {}
    count: dict[str, int] = {}
    by_node: dict[tuple[str, str], float] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] <= first_end:
            continue
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1e3
        count[op] = count.get(op, 0) + 1
        node = (op, e["name"].removesuffix("_kernel_time"))
        by_node[node] = by_node.get(node, 0.0) + e["dur"] / 1e3
    total = sum(by_op.values())
    timed_runs = max(1, len(runs_seen) - 1)
    ops = sorted(by_op.items(), key=lambda kv: -kv[1])
    return {
        "model": model_path.name,
        "input_shape": list(x.shape),
        "runs": timed_runs,
        "wall_ms_per_run": round(float(np.median(walls[1:])) * 1e3, 2),
        "kernel_ms_per_run": round(total / timed_runs, 2),
        "by_op": [
            {
                "op": op,
                "ms_per_run": round(ms / timed_runs, 2),
                "share": round(ms / total, 4),
                "nodes_per_run": count[op] // timed_runs,
            }
            for op, ms in ops
        ],
        "slowest_nodes": [
            {"op": op, "node": node, "ms_per_run": round(ms / timed_runs, 2)}
            for (op, node), ms in sorted(by_node.items(), key=lambda kv: -kv[1])[:12]
        ],
    }
