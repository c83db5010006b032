"""`make bench`: measure the nuclei service side by side, in one run, and write
bench/results/latest.md and latest.json.

    .venv/bin/python bench/run.py            full run (< 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    a minute or two, tiny repetition counts, for development

What it measures, on real DSB2018 images of 256×256, 520×696 and 1024×1024:
  1. raw onnxruntime session.run on the model's input tensor (the whole image, padded);
  2. the in-process pipeline `nuclei.pipeline.segment_bytes` (decode → normalise/tile → run →
     post-process → encode) with the service's own settings, and the share of each stage;
  3. the service end to end over HTTP (`python -m app` on 127.0.0.1, httpx async client)
     at concurrency 1 and 4, start-up to /ready, peak RSS, and a soak for memory growth;
  4. the same Keras model's `predict` (TensorFlow backend) on the same tensors;
  5. FLOPs per image from the ONNX graph against the measured matmul peak of the model's own
     arithmetic (int8 for an INT8 model, float32 otherwise; the other one for context);
and tries variants (threads, graph optimisation, an offline-optimised model, tile size, tile batch,
and the default's other-precision sibling), each timed and scored on the validation split.

The sibling: when the default model is INT8 (made by training.quantize), the float32 model it was
made from (its card's derived.from) is timed raw, profiled, scored as a variant and used for the
Keras weights; when the default is float32, an INT8 model is made from it by training.quantize
(the repository's one implementation of quantisation). Nothing in app/ is changed: a variant that
beats the default is reported with the exact setting that would make it the default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # run as a script: import bench.*, app.*, training.* from the root
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from nuclei.imageio import decode_image  # noqa: E402
from app.config import Settings  # noqa: E402
from app.main import load_segmenter  # noqa: E402
from nuclei.tiling import tile_origins  # noqa: E402
from bench import endtoend, httpprofile, images, inprocess, report, variants  # noqa: E402
from bench.flops import count_flops  # noqa: E402
from bench.peak import measure_peak  # noqa: E402
from bench.stats import Clock  # noqa: E402
from training.quantize import quantize  # noqa: E402

MODES: dict[str, dict[str, Any]] = {
    "full": {
        "budget_s": 555,
        "per_size": 3,
        "raw": {"min_reps": 20, "max_reps": 60, "budget_s": {"256x256": 2, "520x696": 5, "1024x1024": 8}},
        "pipeline": {"min_reps": 20, "max_reps": 60, "budget_s": {"256x256": 3, "520x696": 6, "1024x1024": 10}},
        "keras": {"min_reps": 20, "max_reps": 40, "budget_s": {"256x256": 3, "520x696": 8, "1024x1024": 15}},
        "http": {"256x256": 40, "520x696": 24, "1024x1024": 20},
        "startups": 3,
        "soak_requests": 500,
        "soak_concurrency": 4,
        "variant_reps": 8,
        "variant_budget_s": 2.0,
        "validation_limit": None,
        "calibration_images": 32,  # as `python -m training quantize` (only for a float32 default)
        "calibration_crop": 256,
        "profile_runs": 3,
        "http_reserve_s": 220,  # HTTP runs + the 500-request soak of the faster INT8 default
        "recommended_requests": 12,
        "probe_rounds": 2,
    },
    "quick": {
        "budget_s": 240,
        "per_size": 1,
        "raw": {"min_reps": 3, "max_reps": 5, "budget_s": {"256x256": 0.5, "520x696": 1, "1024x1024": 1}},
        "pipeline": {"min_reps": 3, "max_reps": 5, "budget_s": {"256x256": 0.5, "520x696": 1, "1024x1024": 1}},
        "keras": {"min_reps": 3, "max_reps": 3, "budget_s": {"256x256": 0.5, "520x696": 1, "1024x1024": 1}},
        "http": {"256x256": 4, "520x696": 4, "1024x1024": 4},
        "startups": 1,
        "soak_requests": 24,
        "soak_concurrency": 4,
        "variant_reps": 2,
        "variant_budget_s": 0.5,
        "validation_limit": 8,
        "calibration_images": 4,
        "calibration_crop": 256,
        "profile_runs": 1,
        "http_reserve_s": 60,
        "recommended_requests": 3,
        "probe_rounds": 1,
    },
}
TARGET_SIZES = ("520x696", "1024x1024")


def _get(d: Any, *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def log(clock: Clock, message: str) -> None:
    print(f"[{clock.elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except FileNotFoundError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16") if f in flags]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gb, 1),
        "isa": isa,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    import cv2
    import fastapi
    import httpx
    import onnx
    import uvicorn

    return {
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "httpx": httpx.__version__,
    }


def model_precision(path: Path) -> str:
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return "int8" if ops & {"QuantizeLinear", "QLinearConv", "MatMulInteger", "ConvInteger"} else "float32"


def tiles_of(height: int, width: int, tile: int, overlap: int, stride: int) -> list[tuple[int, int]]:
    """The tile shapes predict_tiled runs for an image (after padding to the stride)."""
    ph, pw = -(-height // stride) * stride, -(-width // stride) * stride
    th, tw = min(tile, ph), min(tile, pw)
    n = len(tile_origins(ph, th, overlap)) * len(tile_origins(pw, tw, overlap))
    return [(th, tw)] * n


def keras_phase(
    clock: Clock,
    mode: dict[str, Any],
    workdir: Path,
    card: dict[str, Any],
    model_path: Path,
    inputs: dict[str, Path],
    outputs: dict[str, Path],
    limit_s: float,
) -> dict[str, Any]:
    arch = card.get("architecture")
    filters = arch.get("filters") if isinstance(arch, dict) else None
    weights_name = arch.get("keras_weights") if isinstance(arch, dict) else None
    weights = model_path.parent / (weights_name or f"{model_path.stem}.weights.h5")
    job = {
        "filters": filters or [16, 32, 64, 128, 256],
        "weights": str(weights),
        "sizes": {
            key: {
                "input": inputs[key].name,
                "onnx_output": outputs[key].name,
                "min_reps": mode["keras"]["min_reps"],
                "max_reps": mode["keras"]["max_reps"],
                "budget_s": mode["keras"]["budget_s"][key],
            }
            for key in inputs
        },
    }
    (workdir / "keras_job.json").write_text(json.dumps(job))
    t0 = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-m", "bench.keras_predict", str(workdir)],
            cwd=ROOT,
            check=True,
            timeout=limit_s,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    except (subprocess.SubprocessError, OSError) as exc:
        log(clock, f"keras: failed ({exc})")
        return {"error": str(exc)}
    result = json.loads((workdir / "keras_result.json").read_text())
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def flops_of(model_path: Path, float_path: Path | None, height: int, width: int) -> dict[str, Any]:
    """FLOPs counted on the model's own graph (a QDQ graph's Convs are its Convs); where shape
    inference cannot see through quantised contrib ops, on its float32 model: the same arithmetic."""
    out = count_flops(model_path, height, width)
    if out["uncounted_nodes"] and float_path is not None and float_path != model_path:
        return {**count_flops(float_path, height, width), "int8_gflop": None, "counted_on": float_path.name}
    return {**out, "counted_on": model_path.name}


def sibling_model(
    clock: Clock,
    mode: dict[str, Any],
    model_path: Path,
    card: dict[str, Any],
    precision: str,
    zip_path: Path | None,
    derived_dir: Path,
) -> dict[str, Any]:
    """The default's other-precision model, timed and scored beside it. For an INT8 default, the
    float32 model it was quantised from (its card's derived.from, in the same folder): there is
    nothing to quantise. For a float32 default, an INT8 model made from it by training.quantize
    (the repository's one implementation of quantisation) in bench/.work/."""
    if precision == "int8":
        name = _get(card, "derived", "from")
        path = model_path.parent / name if name else None
        if path is None or not path.is_file():
            return {"error": f"the float32 source ({name or 'no derived.from in the card'}) is not beside the model"}
        return {
            "path": path,
            "precision": model_precision(path),
            "role": f"the float32 model {model_path.name} was made from",
        }
    if zip_path is None:
        return {"error": "no DSB2018 zip: no training images to calibrate INT8 on"}
    out = derived_dir / f"{model_path.stem}.int8.onnx"
    try:
        int8_card = quantize(
            model_path, out, str(zip_path), images=mode["calibration_images"], crop=mode["calibration_crop"]
        )
    except Exception as exc:  # quantisation tools raise many kinds; report, do not abort the run
        log(clock, f"sibling: INT8 quantisation failed: {exc}")
        return {"error": f"INT8 quantisation failed: {type(exc).__name__}: {exc}"}
    log(clock, f"sibling: INT8 model quantised by training.quantize in {int8_card['derived']['seconds']} s")
    return {
        "path": out,
        "precision": model_precision(out),
        "role": f"INT8 made from {model_path.name} by training.quantize (`python -m training quantize` commits one)",
        "quantisation": {**int8_card["derived"], "bytes": out.stat().st_size},
    }


def rates(gflop: float, median_ms: float, peak: dict[str, Any], precision: str) -> dict[str, Any]:
    """Achieved G(FL)OP/s of one timed run against the measured peaks; `percent_of_peak` is
    against the peak of the model's own arithmetic (int8 for an INT8 model)."""
    rate = gflop / (median_ms / 1e3)
    out = {
        "achieved_gflops": round(rate, 1),
        "percent_of_fp32_peak": round(100 * rate / peak["fp32_peak_gflops"], 1),
        "percent_of_int8_peak": round(100 * rate / peak["int8_peak_gops"], 1),
    }
    out["percent_of_peak"] = out["percent_of_int8_peak" if precision == "int8" else "percent_of_fp32_peak"]
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def variants_phase(
    clock: Clock,
    mode: dict[str, Any],
    workdir: Path,
    settings: Settings,
    card: dict[str, Any],
    model_path: Path,
    decoded: dict[str, list[np.ndarray]],
    zip_path: Path | None,
    sibling: dict[str, Any],
    derived_dir: Path,
    reserve_s: float,
    bench_images: dict[str, list[images.BenchImage]],
) -> dict[str, Any]:
    val_ids = card.get("training", {}).get("validation_ids", [])
    t0 = time.perf_counter()
    validation, validation_note = images.validation_set(zip_path, val_ids, mode["validation_limit"])
    log(clock, f"variants: {validation_note} loaded in {time.perf_counter() - t0:.1f} s")
    intra, inter, tile = settings.intra_op_threads, settings.inter_op_threads, settings.tile_size
    inference = card.get("inference", {})
    base_tile, base_batch = tile or inference.get("tile", 512), inference.get("batch_size", 2)
    V = variants.Variant
    baseline = V(
        "service default",
        "(current settings)",
        model_path,
        intra,
        inter,
        "all",
        tile,
        f"{model_path.name} ({model_precision(model_path)}), INTRA_OP_THREADS={intra}, INTER_OP_THREADS={inter}, "
        f"optimisation all, tile {base_tile}, batch {base_batch}",
        kind="default",
    )
    derived: dict[str, Any] = {}
    optimized = derived_dir / f"{model_path.stem}.optimized.onnx"
    derived["offline_optimized"] = variants.optimize_offline(model_path, optimized, intra)
    log(clock, "variants: offline-optimised model written")
    no_arena = {"enable_cpu_mem_arena": False}
    other_batch = 2 if base_batch == 1 else 1
    candidates = [
        V("intra-op threads 1", "INTRA_OP_THREADS=1", model_path, 1, inter, "all", tile, kind="threads"),
        V(
            "inter-op threads 2",
            "INTER_OP_THREADS=2",
            model_path,
            intra,
            2,
            "all",
            tile,
            "Segmenter runs ORT_SEQUENTIAL, so inter-op threads have no graph branches to run",
            kind="threads",
        ),
        *(
            V(f"graph optimisation {name}", f"Segmenter(optimization='{level}')", model_path, intra, inter, level, tile)
            for name, level in (("basic", "basic"), ("extended", "extended"), ("disabled", "disable"))
        ),
        V(
            "offline-optimised model",
            f"MODEL_PATH={_rel(optimized)} + Segmenter(optimization='disable')",
            optimized,
            intra,
            inter,
            "disable",
            tile,
            "graph saved by onnxruntime at ORT_ENABLE_ALL (machine-specific kernels), loaded without optimising",
            kind="model",
        ),
        V(
            "no memory arena",
            "SessionOptions.enable_cpu_mem_arena = False in Segmenter",
            model_path,
            intra,
            inter,
            "all",
            tile,
            "onnxruntime frees activations after each run instead of keeping its arena",
            session_options=no_arena,
        ),
        V(
            f"tile batch {other_batch}",
            f'model card "inference": {{"batch_size": {other_batch}}}',
            model_path,
            intra,
            inter,
            "all",
            tile,
            batch_size=other_batch,
            kind="batch",
        ),
        *(
            V(f"tile {t}", f"TILE_SIZE={t}", model_path, intra, inter, "all", t, kind="tile")
            for t in (256, 512, 768, 1024)
            if t != base_tile
        ),
    ]
    if mode is MODES["quick"]:  # keep development runs short
        candidates = [c for c in candidates if c.name in ("no memory arena", "tile 512", "tile 1024")]
    candidates += sibling_variants(sibling, settings, base_tile)
    memory_names = {"no memory arena", f"tile batch {other_batch}"} | {
        c.name for c in candidates if c.model_path == sibling.get("path")
    }
    kwargs = {"reps": mode["variant_reps"], "budget_s": mode["variant_budget_s"]}
    probe_files = []
    for k, data in enumerate(i.data for i in bench_images["1024x1024"]):
        probe_files.append(workdir / f"probe_{k}.png")
        probe_files[-1].write_bytes(data)
    probe = (probe_files, mode["probe_rounds"], workdir)
    base = variants.measure(baseline, decoded, validation, None, probe=probe, **kwargs)
    base_labels = base.pop("_labels")
    log(
        clock,
        f"variants: baseline {base['median_sum_ms']:.0f} ms, DSB {base['dsb_score']}, "
        f"RSS {_get(base, 'memory', 'rss_end_mb')} MB",
    )
    done: list[variants.Variant] = []

    def run(v: variants.Variant) -> None:
        """Time and score it; probe its memory where that can decide (it qualifies) or explain
        (arena, batch, the sibling model) something."""
        if clock.left < reserve_s:
            log(clock, f"variants: skipping {v.name} (time budget)")
            return
        try:
            r = variants.measure(v, decoded, validation, base_labels, **kwargs)
            r.pop("_labels")
            variants.decide(base, [v])
            if r["qualifies"] or v.name in memory_names:
                r["memory"] = variants.memory_probe(v.spec(), *probe)
                variants.decide(base, [v])
        except Exception as exc:  # a variant that cannot load is reported, not fatal
            v.result = {"error": f"{type(exc).__name__}: {exc}"}
            log(clock, f"variants: {v.name} failed: {exc}")
            return
        done.append(v)
        log(
            clock,
            f"variants: {v.name}: {r['median_sum_ms']:.0f} ms ({r['speedup']}×), DSB {r['dsb_score']}, "
            f"RSS {_get(r, 'memory', 'rss_end_mb')} MB",
        )

    for v in candidates:
        run(v)
    combos = combinations(done, baseline, no_arena, V)
    for combo in combos:
        run(combo)
    variants.decide(base, done)
    winners = [v for v in done if v.result.get("recommendable")]
    best = min(winners, key=lambda v: v.result["median_sum_ms"]) if winners else None
    return {
        "validation": validation_note,
        "rule": "becomes the default only if faster (sum of the three sizes' median segment() time ≥ 5% lower) "
        "and DSB2018 score drop ≤ 0.01; and not recommended if a fresh process running it holds "
        "more than 500 MB at peak while serving 1024×1024 images (target 5)",
        "baseline": {"name": baseline.name, "setting": baseline.note, **base},
        "variants": [
            {"name": v.name, "setting": v.setting, "note": v.note, "kind": v.kind, **v.result}
            for v in candidates + [c for c in combos if c not in candidates]
        ],
        "derived_models": derived,
        "recommended": (
            {
                "name": best.name,
                "setting": best.setting,
                "speedup": best.result["speedup"],
                "dsb_score": best.result["dsb_score"],
                "score_delta": best.result["score_delta"],
                "model_path": str(best.model_path),
                "tile": best.tile,
                "optimization": best.optimization,
                "intra": best.intra_op_threads,
                "session_options": best.session_options,
                "batch_size": best.batch_size,
                "peak_rss_mb": _get(best.result, "memory", "peak_rss_mb"),
            }
            if best
            else None
        ),
    }


def sibling_variants(sibling: dict[str, Any], settings: Settings, base_tile: int) -> list[variants.Variant]:
    """The sibling model as the service would run it with MODEL_PATH pointing at it (its card's
    tile and batch), and at the default's tile too, so model and tile effects can be told apart."""
    path = sibling.get("path")
    if path is None:
        return []
    inference = images.read_card(path).get("inference", {})
    tile = settings.tile_size or inference.get("tile", 512)
    label = "INT8 static (QDQ)" if sibling["precision"] == "int8" else "float32"
    where = "TILE_SIZE" if settings.tile_size else "its card"
    args = (settings.intra_op_threads, settings.inter_op_threads, "all")
    out = [
        variants.Variant(
            f"{label} model ({where}: tile {tile}, batch {inference.get('batch_size')})",
            f"MODEL_PATH={_rel(path)}",
            path,
            *args,
            settings.tile_size,
            sibling["role"],
            kind="model",
        )
    ]
    if tile != base_tile:
        out.append(
            variants.Variant(
                f"{label} model + tile {base_tile}",
                f"MODEL_PATH={_rel(path)}, TILE_SIZE={base_tile}",
                path,
                *args,
                base_tile,
                f"the default's tile, batch {inference.get('batch_size')} (one tile covers a 1024×1024 image)"
                if base_tile >= 1024
                else "",
                kind="model",
            )
        )
    return out


def combinations(
    done: list[variants.Variant],
    baseline: variants.Variant,
    no_arena: dict[str, Any],
    V: type[variants.Variant],
) -> list[variants.Variant]:
    """Winners of different kinds together: the fastest qualifying model file, tile, thread
    count and batch in one variant (the rest from the default); and the same without the
    memory arena when a part of it holds too much memory."""

    def best(kind: str) -> variants.Variant | None:
        q = [v for v in done if v.kind == kind and v.result.get("qualifies")]
        return min(q, key=lambda v: v.result["median_sum_ms"]) if q else None

    model, tile, threads, batch = (best(k) for k in ("model", "tile", "threads", "batch"))
    if model and tile and model.result.get("tile") == tile.result.get("tile"):
        tile = None  # the model's own card already runs that tile
    parts = [p for p in (model, tile, threads, batch) if p is not None]
    if not parts:
        return []
    combo = V(
        " + ".join(p.name for p in parts),
        ", ".join(p.setting for p in parts),
        (model or baseline).model_path,
        (threads or baseline).intra_op_threads,
        (threads or baseline).inter_op_threads,
        (model or baseline).optimization,
        (tile or model or baseline).tile,
        batch_size=batch.batch_size if batch else None,
        kind="combination",
    )
    out = [combo] if len(parts) > 1 else []
    if any(not p.result.get("memory_ok", True) for p in parts):
        lean = V(
            combo.name + " + no memory arena",
            combo.setting + ", SessionOptions.enable_cpu_mem_arena = False",
            combo.model_path,
            combo.intra_op_threads,
            combo.inter_op_threads,
            combo.optimization,
            combo.tile,
            batch_size=combo.batch_size,
            session_options=no_arena,
            kind="combination",
        )
        out.append(lean)
    return out


def http_phase(
    clock: Clock,
    mode: dict[str, Any],
    workdir: Path,
    bench_images: dict[str, list[images.BenchImage]],
    soak_requests: int,
    reserve_s: float,
    recommended_env: dict[str, str] | None,
    per_image_s: dict[str, float],
) -> dict[str, Any]:
    out: dict[str, Any] = {"startup_s": [], "runs": {}}
    logfile = workdir / "server.log"
    for k in range(mode["startups"]):
        server = endtoend.Server({}, logfile)
        out["startup_s"].append(round(server.start(), 3))
        if k < mode["startups"] - 1:
            server.stop()
    log(clock, f"http: start-up to /ready {out['startup_s']} s (pid {server.pid})")
    out["rss_after_start_mb"] = round(server.rss_mb(), 1)
    # Shrink the request counts (never below 10) if they would not fit what is left of the budget.
    planned = {k: mode["http"][k] for k in bench_images}
    need = sum(2.2 * n * per_image_s.get(k, 1.0) for k, n in planned.items())
    room = clock.left - reserve_s - 20.0
    scale = min(1.0, max(0.0, room) / need) if need else 1.0
    counts = {k: max(10, int(n * scale)) for k, n in planned.items()}
    if scale < 1.0:
        log(clock, f"http: request counts cut to {counts} by the time budget")
    out["requests_planned"], out["requests_run"] = planned, counts
    try:
        for key, imgs in bench_images.items():
            n = counts[key]
            for concurrency in (1, 4):
                run = endtoend.load(server, imgs, n, concurrency, warmup=1 if concurrency == 1 else 0)
                out["runs"][f"{key}@{concurrency}"] = run
                log(
                    clock,
                    f"http: {key} c={concurrency}: p50 {run['latency']['median_ms']:.0f} ms, "
                    f"{run['images_per_s']:.2f} img/s, errors {run['errors']}",
                )
        small = "256x256"  # where HTTP's fixed cost weighs most
        if small in bench_images:
            out["profile"] = {
                f"{small}@{c}": httpprofile.profile(
                    server.pid,
                    lambda c=c: endtoend.load(server, bench_images[small], counts[small], c, warmup=0),
                    workdir / f"py-spy-{small}-c{c}.txt",
                )
                for c in (1, 4)
            }
            log(clock, "http: py-spy profiles " + ", ".join(
                f"{k}: {v.get('samples', v.get('note'))}" for k, v in out["profile"].items()))
        out["peak_rss_before_soak_mb"] = round(server.peak_rss_mb(), 1)
        big = bench_images["1024x1024"]
        per_request = out["runs"]["1024x1024@4"]["wall_s"] / out["runs"]["1024x1024@4"]["requests"]
        affordable = int(max(0.0, clock.left - reserve_s) / max(per_request, 1e-3))
        n = min(soak_requests, affordable)
        out["soak_planned"] = soak_requests
        out["soak_seconds_per_request"] = round(per_request, 3)
        if n < soak_requests:
            log(
                clock,
                f"http: soak cut to {n} of {soak_requests} requests by the time budget "
                f"({per_request:.2f} s per 1024×1024 request)",
            )
        if n > 0:
            soak = endtoend.load(server, big, n, mode["soak_concurrency"], track_rss=True, warmup=0)
            rss = soak.pop("rss_mb")
            soak["leak"] = endtoend.leak_check(rss, tolerance_mb=max(5.0, 0.01 * max(rss)))
            out["soak"] = soak
            log(
                clock,
                f"http: soak {n} requests: RSS {soak['leak'].get('rss_at_end_mb')} MB, "
                f"growth {soak['leak'].get('growth_second_half_mb')} MB, errors {soak['errors']}",
            )
        out["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        out["rss_end_mb"] = round(server.rss_mb(), 1)
    finally:
        server.stop()
    out["alternatives"] = [
        alternative_http(clock, workdir, bench_images, env, counts, note)
        for env, note in ALTERNATIVE_SETTINGS
    ]
    if recommended_env:
        out["recommended"] = recommended_check(
            clock, workdir, bench_images["1024x1024"], recommended_env, mode["recommended_requests"]
        )
    return out


def recommended_env_of(rec: dict[str, Any] | None, settings: Settings) -> dict[str, str] | None:
    """The environment that makes the service run the recommended variant, if env can."""
    if not rec or rec.get("optimization", "all") != "all" or rec.get("session_options") or rec.get("batch_size"):
        return None  # needs a code change, not only the environment
    env = {
        "TILE_SIZE": str(rec["tile"]) if rec.get("tile") else "",
        "INTRA_OP_THREADS": str(rec["intra"]),
        "MODEL_PATH": rec["model_path"],
    }
    return {k: v for k, v in env.items() if v}


def serve_and_load(
    env: dict[str, str], log_path: Path, plan: list[tuple[str, list[images.BenchImage], int, int]]
) -> dict[str, Any]:
    """A service started with `env`: start-up, each planned (size, images, requests,
    concurrency) load as runs["size@concurrency"], and its peak RSS; or the start-up error."""
    server = endtoend.Server(env, log_path)
    result: dict[str, Any] = {"env": env, "runs": {}}
    try:
        result["startup_s"] = round(server.start(), 3)
        for key, imgs, requests, concurrency in plan:
            result["runs"][f"{key}@{concurrency}"] = endtoend.load(
                server, imgs, requests, concurrency, warmup=1 if concurrency == 1 else 0)
        result["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
    except RuntimeError as exc:
        result["error"] = str(exc)
    finally:
        server.stop()
    return result


def recommended_check(
    clock: Clock, workdir: Path, big: list[images.BenchImage], env: dict[str, str], requests: int
) -> dict[str, Any]:
    """The service started with the recommended setting: start-up, 1024×1024 latency, peak RSS."""
    result = serve_and_load(env, workdir / "server-recommended.log", [("1024x1024", big, requests, 1)])
    run = result.pop("runs").get("1024x1024@1")
    if run is not None:
        result["run_1024x1024"] = run
    log(
        clock,
        f"http: recommended setting {env}: {result.get('peak_rss_mb')} MB peak RSS, p50 {_p50(result)} ms at 1024×1024",
    )
    return result


# Service settings that trade single-image latency for throughput under concurrent load:
# run over HTTP, since that is where they differ (in-process, one image at a time, they cannot).
ALTERNATIVE_SETTINGS: list[tuple[dict[str, str], str]] = [
    ({"INFERENCE_WORKERS": "2", "INTRA_OP_SPINNING": "false"},
     "two images at once; onnxruntime's idle threads sleep instead of spinning, so one image's "
     "single-threaded stages (decode, post-process) overlap the other's model run"),
]


def alternative_http(
    clock: Clock,
    workdir: Path,
    bench_images: dict[str, list[images.BenchImage]],
    env: dict[str, str],
    counts: dict[str, int],
    note: str,
) -> dict[str, Any]:
    """The default's HTTP runs (256×256 at concurrency 1 and 4, 1024×1024 at 4) with `env` set."""
    plan = [(key, bench_images[key], counts[key], concurrency)
            for key, concurrency in (("256x256", 1), ("256x256", 4), ("1024x1024", 4)) if key in bench_images]
    result = {**serve_and_load(env, workdir / "server-alternative.log", plan), "note": note}
    log(clock, f"http: alternative {env}: " + ", ".join(
        f"{k} p50 {v['latency']['median_ms']:.1f} ms {v['images_per_s']:.1f} img/s" for k, v in result["runs"].items()))
    return result


def _p50(result: dict[str, Any]) -> Any:
    return result.get("run_1024x1024", {}).get("latency", {}).get("median_ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny repetition counts (development)")
    parser.add_argument("--zip", type=Path, default=images.DEFAULT_ZIP, help="DSB2018 stage1_train.zip")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    parser.add_argument("--name", default=None, help="results file stem (default: latest, or quick)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--soak-requests", type=int, default=None, help="1024×1024 requests in the soak")
    parser.add_argument("--skip", nargs="*", default=[], choices=["keras", "variants", "http"])
    parser.add_argument(
        "--render", action="store_true", help="only rewrite <name>.md from <name>.json (and a separate soak.json)"
    )
    args = parser.parse_args(argv)
    if args.render:
        stem = args.name or "latest"
        results = json.loads((args.out / f"{stem}.json").read_text())
        write_report(results, args.out, stem)
        return 0
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    clock = Clock(args.budget or mode["budget_s"])
    started = datetime.now(UTC)
    settings = Settings()
    model_path = Path(settings.model_path)
    card = images.read_card(model_path)
    precision = model_precision(model_path)
    workdir = Path(tempfile.mkdtemp(prefix="nuclei-bench-"))
    derived_dir = ROOT / "bench" / ".work"  # kept after the run (git-ignored) so a winner can be inspected
    shutil.rmtree(derived_dir, ignore_errors=True)
    derived_dir.mkdir(parents=True)
    zip_path = args.zip if args.zip.is_file() else None
    log(clock, f"{mode_name} run, model {model_path.name} {card.get('version')} ({precision}), work dir {workdir}")
    results: dict[str, Any] = {"mode": mode_name, "started": started.isoformat(timespec="seconds")}
    try:
        val_ids = card.get("training", {}).get("validation_ids", [])
        bench_images, source = images.select_images(zip_path, mode["per_size"], val_ids)
        decoded = {k: [decode_image(i.data) for i in v] for k, v in bench_images.items()}
        results["images"] = {
            "source": source,
            "by_size": {
                k: [
                    {
                        "name": i.name,
                        "bytes": len(i.data),
                        "source": i.source,
                        "shape": list(d.shape),
                        "dtype": str(d.dtype),
                    }
                    for i, d in zip(v, decoded[k], strict=True)
                ]
                for k, v in bench_images.items()
            },
        }
        results["machine"] = machine()
        results["versions"] = versions()
        results["settings"] = {
            "model": model_path.name,
            "model_version": card.get("version"),
            "model_sha256": card.get("sha256"),
            "model_precision": precision,
            "model_derived_from": _get(card, "derived", "from"),
            "intra_op_threads": settings.intra_op_threads,
            "inter_op_threads": settings.inter_op_threads,
            "inference_workers": settings.inference_workers,
            "queue_depth": settings.queue_depth,
            "tile_from": "TILE_SIZE" if settings.tile_size else "model card",
            "graph_optimization": "all (Segmenter default)",
            "output_format": "png (the service default)",
        }
        # the default's other-precision model: its float32 source, or an INT8 model made from it
        sibling = sibling_model(clock, mode, model_path, card, precision, zip_path, derived_dir)
        sib_path = sibling.get("path")
        results["sibling"] = {
            **{k: v for k, v in sibling.items() if k != "path"},
            **({"model": sib_path.name, "path": _rel(sib_path)} if sib_path else {}),
        }
        # the float32 model: Keras weights, Keras parity, and FLOPs when a quantised graph hides shapes
        float_path = (
            model_path if precision == "float32" else sib_path if sibling.get("precision") == "float32" else None
        )

        # 5. the machine's limit
        threads = settings.intra_op_threads or os.cpu_count() or 1
        results["peak"] = measure_peak(
            threads=threads, reps=6 if mode_name == "full" else 2, budget_s=4.0 if mode_name == "full" else 1.0
        )
        peak = results["peak"]
        log(clock, f"peak: fp32 {peak['fp32_peak_gflops']} GFLOP/s, int8 {peak['int8_peak_gops']} GOP/s")

        # 1-2. in process, the service's way (and the sibling as MODEL_PATH would load it)
        segmenter = load_segmenter(settings)
        segmenter.warm_up()
        s = segmenter.inference
        results["settings"].update(tile=s.tile, overlap=s.overlap, batch_size=s.batch_size)
        sib_segmenter = load_segmenter(settings.model_copy(update={"model_path": sib_path})) if sib_path else None
        float_segmenter = segmenter if float_path == model_path else sib_segmenter if float_path else None
        flops, raw, sib_raw, pipe, inputs, outputs = {}, {}, {}, {}, {}, {}
        for key, imgs in bench_images.items():
            x = inprocess.model_input(segmenter, imgs[0].data)
            h, w = imgs[0].height, imgs[0].width
            whole = flops_of(model_path, float_path, x.shape[1], x.shape[2])
            tiles = tiles_of(h, w, s.tile, s.overlap, segmenter.stride)
            tiled = (
                sum(flops_of(model_path, float_path, th, tw)["gflop"] for th, tw in set(tiles))
                * len(tiles)
                / len(set(tiles))
            )
            flops[key] = {
                **whole,
                "tiles": len(tiles),
                "tile_shape": list(tiles[0]),
                "tiled_gflop": round(tiled, 3),
                "tiling_compute_factor": round(tiled / whole["gflop"], 3),
            }
            p = mode["raw"]
            reps = {"min_reps": p["min_reps"], "max_reps": p["max_reps"], "budget_s": p["budget_s"][key]}
            raw[key] = inprocess.raw_onnxruntime(segmenter, x, **reps)
            raw[key].update(rates(whole["gflop"], raw[key]["median_ms"], peak, precision))
            inputs[key], outputs[key] = workdir / f"x_{key}.npy", workdir / f"y_{key}.npy"
            np.save(inputs[key], x)
            reference = float_segmenter or segmenter  # Keras parity is the float32 export's
            np.save(outputs[key], reference.session.run(None, {reference.input_name: x})[0])
            log(
                clock,
                f"raw onnxruntime {key} {list(x.shape)}: median {raw[key]['median_ms']:.1f} ms, "
                f"{raw[key]['achieved_gflops']} G(FL)OP/s ({raw[key]['percent_of_peak']}% of the {precision} peak)",
            )
            if sib_segmenter is not None:
                sib_raw[key] = inprocess.raw_onnxruntime(sib_segmenter, x, **reps)
                sib_raw[key].update(rates(whole["gflop"], sib_raw[key]["median_ms"], peak, sibling["precision"]))
                log(clock, f"raw onnxruntime {key}, {sib_path.name}: median {sib_raw[key]['median_ms']:.1f} ms")
        del sib_segmenter, float_segmenter
        for key, imgs in bench_images.items():
            p = mode["pipeline"]
            pipe[key] = inprocess.pipeline(
                segmenter,
                imgs,
                max_pixels=settings.max_pixels,
                min_reps=p["min_reps"],
                max_reps=p["max_reps"],
                budget_s=p["budget_s"][key],
            )
            model_ms = pipe[key]["stages"]["model"]["mean_ms"]
            pipe[key]["model_gflops_in_pipeline"] = round(flops[key]["tiled_gflop"] / (model_ms / 1e3), 1)
            log(
                clock,
                f"pipeline {key}: median {pipe[key]['median_ms']:.1f} ms, model share "
                f"{pipe[key]['stages']['model']['share']:.0%}",
            )
        results["flops"], results["raw_onnxruntime"], results["pipeline"] = flops, raw, pipe
        results["sibling"]["raw_onnxruntime"] = sib_raw
        profile = {
            "intra": settings.intra_op_threads,
            "inter": settings.inter_op_threads,
            "optimization": "all",
            "workdir": workdir,
            "runs": mode["profile_runs"],
        }
        results["profile"] = {
            key: variants.profile_ops(model_path, np.load(inputs[key]), **profile) for key in TARGET_SIZES
        }
        if sib_path:
            big = np.load(inputs["1024x1024"])
            results["sibling"]["profile"] = {"1024x1024": variants.profile_ops(sib_path, big, **profile)}
        log(clock, "profile: onnxruntime profiler done")
        del segmenter

        # 4. Keras predict, in its own process, with the float32 model's weights
        if "keras" not in args.skip:
            keras_model = float_path or model_path
            results["keras"] = keras_phase(
                clock,
                mode,
                workdir,
                images.read_card(keras_model),
                keras_model,
                inputs,
                outputs,
                limit_s=max(30.0, clock.left - 200),
            )
            results["keras"]["parity_against"] = keras_model.name
            log(clock, "keras: done")

        # variants: threads, graph optimisation, offline model, tile, batch, the sibling model
        if "variants" not in args.skip:
            results["variants"] = variants_phase(
                clock,
                mode,
                workdir,
                settings,
                card,
                model_path,
                decoded,
                zip_path,
                sibling,
                derived_dir,
                mode["http_reserve_s"],
                bench_images,
            )

        # 3. over HTTP, then the soak with what is left of the budget
        if "http" not in args.skip:
            soak = args.soak_requests if args.soak_requests is not None else mode["soak_requests"]
            rec_env = recommended_env_of(_get(results, "variants", "recommended"), settings)
            reserve = 8.0 + (mode["recommended_requests"] * 1.0 + 5.0 if rec_env else 0.0)
            per_image = {k: v["mean_ms"] / 1e3 for k, v in results.get("pipeline", {}).items()}
            results["http"] = http_phase(clock, mode, workdir, bench_images, soak, reserve, rec_env, per_image)
    finally:
        results["wall_s"] = round(clock.elapsed, 1)
        results["command"] = " ".join([Path(sys.executable).name, "bench/run.py", *(argv or sys.argv[1:])])
        stem = args.name or ("latest" if mode_name == "full" else "quick")
        shutil.rmtree(workdir, ignore_errors=True)
        write_report(results, args.out, stem)
    print(f"wrote {args.out / (stem + '.md')} and {stem}.json in {results['wall_s']} s", file=sys.stderr)
    return 0


def write_report(results: dict[str, Any], out: Path, stem: str) -> str:
    """Targets (with a separate soak run of the same model, if there is one), JSON, Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    soak_file = out / "soak.json"
    separate = None
    if stem != "soak" and soak_file.is_file():
        other = json.loads(soak_file.read_text())
        if _get(other, "settings", "model_sha256") == _get(results, "settings", "model_sha256"):
            separate = {
                "started": other.get("started"),
                "command": other.get("command"),
                "http": other.get("http"),
                "settings": other.get("settings"),
            }
    results["separate_soak"] = separate
    results["targets"] = report.targets(results)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = report.markdown(results)
    (out / f"{stem}.md").write_text(table)
    print(table)
    return table


if __name__ == "__main__":
    sys.exit(main())
