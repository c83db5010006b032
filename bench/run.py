"""`make bench`: measure the nuclei service side by side, in one run, and write
bench/results/latest.md and latest.json.

    .venv/bin/python bench/run.py            full run (< 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    a minute or two, tiny repetition counts, for development

What it measures, on real DSB2018 images of 256×256, 520×696 and 1024×1024:
  1. raw onnxruntime session.run on the model's input tensor (the whole image, padded);
  2. the in-process pipeline `app.pipeline.segment_upload` (decode → normalise/tile → run →
     post-process → encode) with the service's own settings, and the share of each stage;
  3. the service end to end over HTTP (`python -m app` on 127.0.0.1, httpx async client)
     at concurrency 1 and 4, start-up to /ready, peak RSS, and a soak for memory growth;
  4. the same Keras model's `predict` (TensorFlow backend) on the same tensors;
  5. FLOPs per image from the ONNX graph against the measured float32/int8 matmul peak;
and tries variants (threads, graph optimisation, an offline-optimised model, tile size, static
INT8), each timed and scored on the validation split. Nothing in app/ is changed: a variant that
wins is reported with the exact setting that would make it the default.
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

from app.codec import decode_image  # noqa: E402
from app.config import Settings  # noqa: E402
from app.main import load_segmenter  # noqa: E402
from app.tiling import tile_origins  # noqa: E402
from bench import endtoend, images, inprocess, report, variants  # noqa: E402
from bench.flops import count_flops  # noqa: E402
from bench.peak import measure_peak  # noqa: E402
from bench.stats import Clock, repeat, summarize  # noqa: E402

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
        "calibration_images": 24,
        "calibration_crop": 256,
        "profile_runs": 3,
        "http_reserve_s": 200,
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


def int8_raw_rate(
    path: Path, x_path: Path, intra: int, inter: int, peak: dict[str, Any], reps: dict[str, Any]
) -> dict[str, Any]:
    """session.run of the INT8 model on the 1024×1024 tensor: its rate against the int8 peak
    (the arithmetic is the float model's: same convolutions, int8 operands)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = intra, inter
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.load(x_path)}
    times = repeat(
        lambda _i: session.run(None, feed),
        min_reps=min(10, reps["min_reps"]),
        max_reps=reps["max_reps"],
        budget_s=reps["budget_s"]["1024x1024"] / 2,
    )
    out = summarize(times)
    gop = peak["_model_gflop_1024"]
    rate = gop / (out["median_ms"] / 1e3)
    return {
        **out,
        "gop": gop,
        "achieved_gops": round(rate, 1),
        "percent_of_int8_peak": round(100 * rate / peak["int8_peak_gops"], 1),
        "percent_of_fp32_peak": round(100 * rate / peak["fp32_peak_gflops"], 1),
    }


def variants_phase(
    clock: Clock,
    mode: dict[str, Any],
    workdir: Path,
    settings: Settings,
    card: dict[str, Any],
    model_path: Path,
    decoded: dict[str, list[np.ndarray]],
    zip_path: Path | None,
    input_name: str,
    raw_inputs: dict[str, Path],
    peak: dict[str, Any],
    reserve_s: float,
    bench_images: dict[str, list[images.BenchImage]],
) -> dict[str, Any]:
    val_ids = card.get("training", {}).get("validation_ids", [])
    t0 = time.perf_counter()
    validation, validation_note = images.validation_set(zip_path, val_ids, mode["validation_limit"])
    log(clock, f"variants: {validation_note} loaded in {time.perf_counter() - t0:.1f} s")
    intra, inter = settings.intra_op_threads, settings.inter_op_threads
    base_tile = settings.tile_size or card.get("inference", {}).get("tile", 512)
    V = variants.Variant
    baseline = V(
        "service default",
        "(current settings)",
        model_path,
        intra,
        inter,
        "all",
        settings.tile_size,
        f"INTRA_OP_THREADS={intra}, INTER_OP_THREADS={inter}, optimisation all, tile {base_tile}",
    )
    derived: dict[str, Any] = {}
    derived_dir = ROOT / "bench" / ".work"  # kept after the run (git-ignored) so a winner can be inspected
    shutil.rmtree(derived_dir, ignore_errors=True)
    derived_dir.mkdir(parents=True)
    optimized = derived_dir / f"{model_path.stem}.optimized.onnx"
    derived["offline_optimized"] = variants.optimize_offline(model_path, optimized, card, intra)
    log(clock, "variants: offline-optimised model written")
    tile = settings.tile_size
    no_arena = {"enable_cpu_mem_arena": False}
    candidates = [
        V("intra-op threads 1", "INTRA_OP_THREADS=1", model_path, 1, inter, "all", tile),
        V(
            "inter-op threads 2",
            "INTER_OP_THREADS=2",
            model_path,
            intra,
            2,
            "all",
            tile,
            "Segmenter runs ORT_SEQUENTIAL, so inter-op threads have no graph branches to run",
        ),
        V("graph optimisation basic", "Segmenter(optimization='basic')", model_path, intra, inter, "basic", tile),
        V(
            "graph optimisation extended",
            "Segmenter(optimization='extended')",
            model_path,
            intra,
            inter,
            "extended",
            tile,
        ),
        V(
            "graph optimisation disabled",
            "Segmenter(optimization='disable')",
            model_path,
            intra,
            inter,
            "disable",
            tile,
        ),
        V(
            "offline-optimised model",
            "MODEL_PATH=<model>.optimized.onnx + Segmenter(optimization='disable')",
            optimized,
            intra,
            inter,
            "disable",
            tile,
            "graph saved by onnxruntime at ORT_ENABLE_ALL (machine-specific NCHWc kernels), loaded without optimising",
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
            "tile batch 1",
            'model card "inference": {"batch_size": 1}',
            model_path,
            intra,
            inter,
            "all",
            tile,
            batch_size=1,
        ),
    ]
    for t in (256, 768, 1024):
        if t != base_tile:
            candidates.append(V(f"tile {t}", f"TILE_SIZE={t}", model_path, intra, inter, "all", t))
    if mode is MODES["quick"]:  # keep development runs short
        candidates = [c for c in candidates if c.name in ("no memory arena", "tile 1024")]
    int8_path = derived_dir / f"{model_path.stem}.int8.onnx"
    int8_variant = None
    try:
        batches, calib_note = images.calibration_batches(
            zip_path, val_ids, mode["calibration_images"], mode["calibration_crop"]
        )
        derived["int8"] = variants.quantize_int8(model_path, int8_path, batches, card, calib_note, input_name)
        log(clock, f"variants: INT8 model quantised in {derived['int8']['seconds']} s")
        derived["int8"]["raw_1024x1024"] = int8_raw_rate(
            int8_path, raw_inputs["1024x1024"], intra, inter, peak, mode["raw"]
        )
        derived["int8"]["profile_1024x1024"] = variants.profile_ops(
            int8_path,
            np.load(raw_inputs["1024x1024"]),
            intra=intra,
            inter=inter,
            optimization="all",
            workdir=workdir,
            runs=mode["profile_runs"],
        )
        int8_variant = V(
            "INT8 static (QDQ)",
            "MODEL_PATH=<model>.int8.onnx (+ its card)",
            int8_path,
            intra,
            inter,
            "all",
            tile,
            calib_note,
        )
        candidates.append(int8_variant)
    except Exception as exc:  # quantisation tools raise many kinds; report, do not abort the run
        derived["int8"] = {"error": f"{type(exc).__name__}: {exc}"}
        log(clock, f"variants: INT8 quantisation failed: {exc}")

    probe_files = []
    for k, data in enumerate(i.data for i in bench_images["1024x1024"]):
        probe_files.append(workdir / f"probe_{k}.png")
        probe_files[-1].write_bytes(data)
    memory_names = {"no memory arena", "tile batch 1", "tile 768", "tile 1024", "INT8 static (QDQ)"}
    kwargs = {"reps": mode["variant_reps"], "budget_s": mode["variant_budget_s"]}
    probe = (probe_files, mode["probe_rounds"], workdir)
    base = variants.measure(baseline, decoded, validation, None, probe=probe, **kwargs)
    base_labels = base.pop("_labels")
    log(
        clock,
        f"variants: baseline {base['median_sum_ms']:.0f} ms, DSB {base['dsb_score']}, "
        f"RSS {_get(base, 'memory', 'rss_end_mb')} MB",
    )
    done: list[variants.Variant] = []

    def run(v: variants.Variant, with_probe: bool) -> bool:
        if clock.left < reserve_s:
            log(clock, f"variants: skipping {v.name} (time budget)")
            return False
        try:
            r = variants.measure(v, decoded, validation, base_labels, probe=probe if with_probe else None, **kwargs)
            r.pop("_labels")
        except Exception as exc:  # a variant that cannot load is reported, not fatal
            v.result = {"error": f"{type(exc).__name__}: {exc}"}
            log(clock, f"variants: {v.name} failed: {exc}")
            return False
        done.append(v)
        variants.decide(base, [v])
        log(
            clock,
            f"variants: {v.name}: {r['median_sum_ms']:.0f} ms ({r['speedup']}×), DSB {r['dsb_score']}, "
            f"RSS {_get(r, 'memory', 'rss_end_mb')} MB",
        )
        return True

    for v in candidates:
        run(v, v.name in memory_names)
    combos = combinations(done, base, int8_variant, no_arena, V)
    for combo in combos:
        run(combo, True)
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
            {"name": v.name, "setting": v.setting, "note": v.note, **v.result}
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


def combinations(
    done: list[variants.Variant],
    base: dict[str, Any],
    int8_variant: variants.Variant | None,
    no_arena: dict[str, Any],
    V: type[variants.Variant],
) -> list[variants.Variant]:
    """Winners of different kinds together: the fastest qualifying model file (INT8 or
    offline-optimised), tile and thread count in one variant; and the same without the memory
    arena when a part of it holds too much memory."""

    def best(prefixes: tuple[str, ...]) -> variants.Variant | None:
        q = [v for v in done if v.name.startswith(prefixes) and v.result.get("qualifies")]
        return min(q, key=lambda v: v.result["median_sum_ms"]) if q else None

    model = best(("INT8", "offline-optimised"))
    tile = best(("tile ",))
    threads = best(("intra-op", "inter-op"))
    parts = [p for p in (model, tile, threads) if p is not None]
    if not parts:
        return []
    first = parts[0]
    combo = V(
        " + ".join(p.name for p in parts),
        ", ".join(p.setting for p in parts),
        (model or first).model_path,
        (threads or first).intra_op_threads,
        (threads or first).inter_op_threads,
        (model or first).optimization,
        (tile or first).tile,
    )
    out = [combo] if len(parts) > 1 else []
    heavy = any(not p.result.get("memory_ok", True) for p in parts)
    if heavy:
        lean = V(
            combo.name + " + no memory arena",
            combo.setting + ", SessionOptions.enable_cpu_mem_arena = False",
            combo.model_path,
            combo.intra_op_threads,
            combo.inter_op_threads,
            combo.optimization,
            combo.tile,
            session_options=no_arena,
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


def recommended_check(
    clock: Clock, workdir: Path, big: list[images.BenchImage], env: dict[str, str], requests: int
) -> dict[str, Any]:
    """The service started with the recommended setting: start-up, 1024×1024 latency, peak RSS."""
    server = endtoend.Server(env, workdir / "server-recommended.log")
    try:
        startup = server.start()
        run = endtoend.load(server, big, requests, 1, warmup=1)
        result = {
            "env": env,
            "startup_s": round(startup, 3),
            "run_1024x1024": run,
            "peak_rss_mb": round(server.peak_rss_mb(), 1),
        }
    except RuntimeError as exc:
        result = {"env": env, "error": str(exc)}
    finally:
        server.stop()
    log(
        clock,
        f"http: recommended setting {env}: {result.get('peak_rss_mb')} MB peak RSS, p50 {_p50(result)} ms at 1024×1024",
    )
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
    workdir = Path(tempfile.mkdtemp(prefix="nuclei-bench-"))
    zip_path = args.zip if args.zip.is_file() else None
    log(clock, f"{mode_name} run, model {model_path.name} {card.get('version')}, work dir {workdir}")
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
        inference = card.get("inference", {})
        results["settings"] = {
            "model": model_path.name,
            "model_version": card.get("version"),
            "model_sha256": card.get("sha256"),
            "intra_op_threads": settings.intra_op_threads,
            "inter_op_threads": settings.inter_op_threads,
            "inference_workers": settings.inference_workers,
            "queue_depth": settings.queue_depth,
            "tile": settings.tile_size or inference.get("tile"),
            "overlap": inference.get("overlap"),
            "batch_size": inference.get("batch_size"),
            "graph_optimization": "all (Segmenter default)",
            "output_format": "png (the service default)",
            "model_precision": model_precision(model_path),
        }
        # 5. the machine's limit
        threads = settings.intra_op_threads or os.cpu_count() or 1
        results["peak"] = measure_peak(
            threads=threads, reps=6 if mode_name == "full" else 2, budget_s=4.0 if mode_name == "full" else 1.0
        )
        log(
            clock,
            f"peak: fp32 {results['peak']['fp32_peak_gflops']} GFLOP/s, int8 {results['peak']['int8_peak_gops']} GOP/s",
        )

        # 1-2. in process, the service's way
        segmenter = load_segmenter(settings)
        segmenter.warm_up()
        s = segmenter.inference
        results["settings"]["tile"] = s.tile
        flops, raw, pipe, inputs, outputs = {}, {}, {}, {}, {}
        for key, imgs in bench_images.items():
            x = inprocess.model_input(segmenter, imgs[0].data)
            h, w = imgs[0].height, imgs[0].width
            whole = count_flops(model_path, x.shape[1], x.shape[2])
            tiles = tiles_of(h, w, s.tile, s.overlap, segmenter.stride)
            tiled = (
                sum(count_flops(model_path, th, tw)["gflop"] for th, tw in set(tiles)) * len(tiles) / len(set(tiles))
            )
            flops[key] = {
                **whole,
                "tiles": len(tiles),
                "tile_shape": list(tiles[0]),
                "tiled_gflop": round(tiled, 3),
                "tiling_compute_factor": round(tiled / whole["gflop"], 3),
            }
            p = mode["raw"]
            raw[key] = inprocess.raw_onnxruntime(
                segmenter, x, min_reps=p["min_reps"], max_reps=p["max_reps"], budget_s=p["budget_s"][key]
            )
            raw[key]["achieved_gflops"] = round(whole["gflop"] / (raw[key]["median_ms"] / 1e3), 1)
            raw[key]["percent_of_fp32_peak"] = round(
                100 * raw[key]["achieved_gflops"] / results["peak"]["fp32_peak_gflops"], 1
            )
            inputs[key], outputs[key] = workdir / f"x_{key}.npy", workdir / f"y_{key}.npy"
            np.save(inputs[key], x)
            np.save(outputs[key], segmenter.session.run(None, {segmenter.input_name: x})[0])
            log(
                clock,
                f"raw onnxruntime {key} {list(x.shape)}: median {raw[key]['median_ms']:.1f} ms, "
                f"{raw[key]['achieved_gflops']} GFLOP/s ({raw[key]['percent_of_fp32_peak']}% of peak)",
            )
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
            pipe[key]["model_gflops_in_pipeline"] = round(flops[key]["gflop"] / (model_ms / 1e3), 1)
            log(
                clock,
                f"pipeline {key}: median {pipe[key]['median_ms']:.1f} ms, model share "
                f"{pipe[key]['stages']['model']['share']:.0%}",
            )
        results["flops"], results["raw_onnxruntime"], results["pipeline"] = flops, raw, pipe
        profiles = {}
        for key in TARGET_SIZES:
            profiles[key] = variants.profile_ops(
                model_path,
                np.load(inputs[key]),
                intra=settings.intra_op_threads,
                inter=settings.inter_op_threads,
                optimization="all",
                workdir=workdir,
                runs=mode["profile_runs"],
            )
        results["profile"] = profiles
        log(clock, "profile: onnxruntime profiler done")
        input_name = segmenter.input_name
        del segmenter

        # 4. Keras predict, in its own process
        if "keras" not in args.skip:
            results["keras"] = keras_phase(
                clock, mode, workdir, card, model_path, inputs, outputs, limit_s=max(30.0, clock.left - 200)
            )
            log(clock, "keras: done")

        # variants: threads, graph optimisation, offline model, tile, INT8
        if "variants" not in args.skip:
            peak = {**results["peak"], "_model_gflop_1024": flops["1024x1024"]["gflop"]}
            results["variants"] = variants_phase(
                clock,
                mode,
                workdir,
                settings,
                card,
                model_path,
                decoded,
                zip_path,
                input_name,
                inputs,
                peak,
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
