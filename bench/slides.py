"""`python -m bench.slides SLIDE OUT [nuclei-batch options]`: one whole-slide job's time,
MP/s and peak RSS over the job and every process it starts (scheduler, nannies, workers),
with `bench.throughput.TreePeak`. Make a slide first: `python -m batch.synthetic PATH --size N`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import tifffile

from bench.throughput import TreePeak


def main() -> int:
    image, out, *options = sys.argv[1:]
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "batch", image, out, "--quiet", *options],
                           stderr=subprocess.PIPE, text=True)
    peak = TreePeak(job.pid)
    _, stderr = job.communicate()
    seconds = time.perf_counter() - start
    with tifffile.TiffFile(image) as tif:
        level = tif.series[0].levels[0]
        pixels = int(np.prod([n for a, n in zip(level.axes, level.shape, strict=True) if a in "YX"]))
    print(json.dumps({
        "image": image, "pixels": pixels, "status": job.returncode, "seconds": round(seconds, 1),
        "mp_per_s": round(pixels / seconds / 1e6, 3), "sum_of_peak_rss_mb": peak.stop(),
        "peak_total_rss_mb": round(peak.at_once, 1), "largest_process_mb": round(max(peak.peaks.values()), 1),
        "stderr": stderr.strip().splitlines()[-3:],
    }, indent=1))
    return job.returncode


if __name__ == "__main__":
    sys.exit(main())
