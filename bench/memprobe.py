"""Resident memory of one variant in a fresh process: build the Segmenter the service's way,
run `nuclei.pipeline.segment_bytes` on the given image files, report VmRSS/VmHWM in MB.

    python -m bench.memprobe JOB.json   (printed: one JSON line)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    import app.main  # noqa: F401 - the server's imports (FastAPI, uvicorn's deps) count in its RSS
    from app.config import Settings
    from nuclei.encode import OutputFormat
    from nuclei.pipeline import segment_bytes
    from bench.variants import build_segmenter

    segmenter = build_segmenter(job["spec"])
    segmenter.warm_up()
    out = {"rss_after_load_mb": _mb("VmRSS")}
    files = [Path(p).read_bytes() for p in job["images"]]
    max_pixels = Settings().max_pixels
    after = []
    for _ in range(job["repeats"]):
        for data in files:
            segment_bytes(segmenter, data, output=OutputFormat.png, filename="x.png", max_pixels=max_pixels)
        after.append(_mb("VmRSS"))
    out.update({"rss_after_each_round_mb": after, "rss_end_mb": _mb("VmRSS"), "peak_rss_mb": _mb("VmHWM")})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
