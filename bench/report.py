"""bench/results/latest.json → Markdown tables. Everything printed comes from the results: the
meaning of each measure is in docs/performance.md, not here, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def _ms(entry: dict[str, Any] | None) -> str:
    return f"{entry['p50_ms']:.1f} ({entry['p95_ms']:.1f})" if entry else "–"


def _rate(r: dict[str, Any], flop_per_pixel: float, peak: dict[str, Any]) -> list[str]:
    """GOP/s of the whole-image session.run, and that as a share of each measured peak."""
    _, h, w, _ = r["input_shape"]
    gops = flop_per_pixel * h * w / r["session.run"]["p50_ms"] / 1e6
    return [f"{gops:.1f}", f"{gops / peak['fp32_gflops']:.0%}", f"{gops / peak['int8_gops']:.0%}"]


def render(res: dict[str, Any]) -> str:
    meta, peak, fpp = res["meta"], res["peak"], res["flop_per_pixel"]
    out = [f"# Benchmark {meta['date']}", ""]
    out += [f"- {k}: {v}" for k, v in meta.items() if k != "date"]
    out += [f"- {name}: {m['file']} {m['version']} ({m['sha256'][:12]}), tile {m['tile']}, overlap {m['overlap']}, "
            f"batch {m['batch']}" for name, m in res["models"].items()]
    out += ["", "## In-process, p50 ms (p95)", ""]
    rows = [[name, size, r["segment_bytes()"]["n"], r["tiles"], _ms(r["session.run"]),
             _ms(r.get("segment()")), _ms(r["segment_bytes()"]), _ms(r.get("quality=true")), r["images_per_s"],
             r["megapixels_per_s"],
             *_rate(r, fpp, peak)]
            for name, sizes in res["inprocess"].items() for size, r in sizes.items()]
    out += _table(["model", "size", "runs", "tiles", "session.run, whole image", "segment()", "segment_bytes()",
                   "segment_bytes(quality=true)", "img/s", "MP/s", "GOP/s", "% fp32 peak", "% int8 peak"], rows)
    out += ["## Stages called directly, p50 ms", ""]
    rows = [[name, size, *(f"{r[s]['p50_ms']:.1f}" for s in res["stages"]), f"{r['stage sum']['p50_ms']:.1f}",
             f"{r['segment_bytes()']['p50_ms']:.1f}", r["stage_sum_over_end_to_end"],
             f"{r['segment() stages']['p50_ms']:.1f}", f"{r['segment()']['p50_ms']:.1f}",
             f"{r['measure()']['p50_ms']:.1f}", f"{100 * r['measure_over_segment']:.1f} %"]
            for name, sizes in res["inprocess"].items() for size, r in sizes.items() if "stage sum" in r]
    out += _table(["model", "size", *res["stages"], "sum", "segment_bytes()", "sum ÷ segment_bytes(), of the minima",
                   "normalize+predict_tiled+instances", "segment()", "measure() (format=measurements)",
                   "measure() ÷ segment(), of the minima"], rows)
    prev = res["previous"]
    out += [f"## Served model {prev['served']} against {prev['previous']} and against one pass: segment(), "
            "p50 ms (p95)", ""]
    out += _table(["image", "runs", prev["served"], prev["previous"], "one pass at the training diameter",
                   "÷ previous", "÷ one pass (medians of the ratios)"],
                  [[size, r["served"]["n"], _ms(r["served"]), _ms(r["previous"]), _ms(r["one pass"]),
                    f"{r['ratio_previous']:.3f}×", f"{r['ratio_one pass']:.3f}×"] for size, r in prev["sizes"].items()])
    keras = res["keras"]
    out += ["## Anchor: Keras predict on the same weights, p50 ms (p95)", ""]
    out += [f"Keras failed: {keras['error']}", ""] if "error" in keras else [
        f"TensorFlow {keras['tensorflow']}, Keras {keras['keras']}, import + build {keras['import_and_build_s']} s", ""]
    rows = []
    for size, k in keras.get("sizes", {}).items():
        f32, i8 = (res["inprocess"][m][size]["session.run"] for m in ("float32", "int8"))
        rows.append([size, _ms(k["predict"]), _ms(f32), _ms(i8), f"{k['predict']['p50_ms'] / f32['p50_ms']:.2f}×",
                     f"{k['predict']['p50_ms'] / i8['p50_ms']:.2f}×", f"{k['max_abs_diff_vs_onnx']:.1e}"])
    out += _table(["size", "Keras predict", "float32 session.run", "INT8 session.run", "float32 speed-up",
                   "INT8 speed-up", "max |Keras − float32 ONNX|"], rows)
    out += ["## Anchor: measured matmul peak", ""]
    out += _table(["float32 GFLOP/s (numpy)", "int8 GOP/s (MatMulInteger)", "matmul", "threads", "model FLOP/pixel"],
                  [[peak["fp32_gflops"], peak["int8_gops"], f"{peak['size']}³", peak["threads"], f"{fpp:,.0f}"]])
    out += ["## HTTP (served default, format=png), latency ms", ""]
    inproc = res["inprocess"][res["served"]]
    rows = [[h["size"], h["concurrency"], h["requests"], h["errors"], f"{h['p50_ms']:.1f}", f"{h['p95_ms']:.1f}",
             h["images_per_s"], h["megapixels_per_s"], h["server_cpu_ms_per_image"],
             f"{h['p50_ms'] / inproc[h['size']]['segment_bytes()']['p50_ms']:.2f}",
             f"{h['images_per_s'] / inproc[h['size']]['images_per_s']:.2f}"] for h in res["http"]]
    out += _table(["size", "concurrency", "requests", "errors", "p50", "p95", "img/s", "MP/s", "server CPU ms/img",
                   "p50 ÷ in-process", "img/s ÷ in-process"], rows)
    out += ["## nuclei-client, labels + measurements (its default outputs)", ""]
    out += _table(["requests", "exit status", "s", "img/s"], [[name, c["status"], c["seconds"], c["images_per_s"]]
                                                               for name, c in res.get("client", {}).items()])
    s, up = res["soak"], res["startup"]
    out += ["## Server: start-up and memory", ""]
    out += _table(["start-up to /ready, s (runs)", "idle RSS MB", "soak", "requests", "errors", "RSS first → last MB",
                   "peak RSS MB, server's life", "RSS slope, last half, MB / 100 requests"],
                  [[f"{up['median_s']} ({', '.join(map(str, up['runs']))})", up["idle_rss_mb"],
                    f"{s['size']}, concurrency {s['concurrency']}", s["requests"], s["errors"],
                    f"{s['rss_first_mb']} → {s['rss_last_mb']}", s["peak_rss_mb"], s["slope_mb_per_100_requests"]]])
    return "\n".join(out)
