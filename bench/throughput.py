"""`python -m bench.throughput`: the same DSB2018 images three ways, in one run — a plain
in-process loop, `nuclei-batch` on a LocalCluster, `nuclei-client` against `python -m app` —
with images/s, MP/s and the peak RSS of every process involved (sampled over the whole tree).
`client_rates` (also in `make bench`): the client with one request per format, and one for all.
`--images 200` needs ../shared/datasets/dsb2018; `--slide SLIDE OUT [nuclei-batch options]`: one
whole-slide job instead (make one with `python -m batch.synthetic PATH --size N`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from bench.proc import descendants, peak_rss_mb, rss_mb
from bench.server import ROOT, serve

DATA = ROOT.parent / "shared" / "datasets" / "dsb2018" / "stage1_train.zip"
LOOP = """
import sys
from pathlib import Path
from nuclei.imageio import decode_image
from nuclei.measure import measure
from nuclei.segmenter import Segmenter
s = Segmenter(sys.argv[2], intra_op_threads=int(sys.argv[3]))
for p in sorted(Path(sys.argv[1]).rglob("*.png")):
    image = decode_image(p.read_bytes())
    measure(s.segment(image), image)
"""


def extract(count: int, folder: Path) -> tuple[int, float]:
    """The first `count` images of the zip (sorted ids); (count, megapixels)."""
    with zipfile.ZipFile(DATA) as z:
        names = sorted(n for n in z.namelist() if "/images/" in n and n.endswith(".png"))[:count]
        for name in names:
            (folder / Path(name).name).write_bytes(z.read(name))
    pixels = sum(math.prod(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]) for path in folder.glob("*.png"))
    return len(names), pixels / 1e6


class TreePeak:
    """Peak RSS of a process tree: each process's own peak (VmHWM), kept as processes come and
    go, summed at the end — an upper bound, as the peaks need not coincide."""

    def __init__(self, *roots: int) -> None:
        self.roots, self.peaks, self._stop = roots, {}, threading.Event()
        self.at_once = 0.0  # the largest sum of the tree's current RSS seen in one sample
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            pids = [pid for root in self.roots for pid in (root, *descendants(root))]
            for pid in pids:
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak_rss_mb(pid))
            self.at_once = max(self.at_once, sum(rss_mb(pid) for pid in pids))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(sum(self.peaks.values()), 1)


def timed(command: list[str], *extra_roots: int, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(seconds, peak MB of the command's tree plus `extra_roots`' trees, exit status)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    peak = TreePeak(proc.pid, *extra_roots)
    status = proc.wait()
    return time.perf_counter() - start, peak.stop(), status


def client_rates(folder: Path, count: int, url: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """nuclei-client's default outputs (labels + measurements) of the `count` images in `folder`:
    one request per format, as before #25, and both from one request; seconds, images/s, status."""
    rates = {}
    for runs in (("labels", "measurements"), ("labels,measurements",)):
        with tempfile.TemporaryDirectory() as out:
            done = [timed([sys.executable, "-m", "client", str(folder), out, "--url", url, "--formats", formats,
                           "--quiet"], env=env) for formats in runs]
        seconds = sum(d[0] for d in done)
        rates[f"{len(runs)} per image"] = {"seconds": round(seconds, 1), "images_per_s": round(count / seconds, 2),
                                           "status": max(d[2] for d in done)}
    return rates


def slide_job(image: str, out: str, *options: str) -> dict[str, Any]:
    """One whole-slide `nuclei-batch` job: time, MP/s and peak RSS over the job and every
    process it starts (scheduler, nannies, workers)."""
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "batch", image, out, "--quiet", *options], stderr=subprocess.PIPE,
                           text=True)
    peak = TreePeak(job.pid)
    _, stderr = job.communicate()
    seconds = time.perf_counter() - start
    with tifffile.TiffFile(image) as tif:
        level = tif.series[0].levels[0]
        pixels = int(np.prod([n for a, n in zip(level.axes, level.shape, strict=True) if a in "YX"]))
    return {"image": image, "pixels": pixels, "status": job.returncode, "seconds": round(seconds, 1),
            "mp_per_s": round(pixels / seconds / 1e6, 3), "sum_of_peak_rss_mb": peak.stop(),
            "peak_total_rss_mb": round(peak.at_once, 1), "largest_process_mb": round(max(peak.peaks.values()), 1),
            "stderr": stderr.strip().splitlines()[-3:]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--model", default=str(ROOT / "models" / "nuclei-unet.int8.onnx"))
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    p.add_argument("--slide", nargs=argparse.REMAINDER, metavar="SLIDE OUT …", help="one whole-slide job instead")
    args = p.parse_args()
    if args.slide:
        result = slide_job(*args.slide)
        print(json.dumps(result, indent=1))
        return result["status"]
    cores = os.cpu_count() or 1
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {"cores": cores, "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        images = Path(tmp) / "in"
        images.mkdir()
        count, megapixels = extract(args.images, images)
        results.update(images=count, megapixels=round(megapixels, 1))
        for name, command in (
                ("in-process loop (1 process, 2 threads)", ["-c", LOOP, str(images), args.model, str(cores)]),
                (f"nuclei-batch, LocalCluster ({cores} workers × 1 thread)",
                 ["-m", "batch", str(images), f"{tmp}/batch", "--model", args.model, "--quiet"])):
            seconds, peak, status = timed([sys.executable, *command], env=env)
            results[name] = {"seconds": round(seconds, 1), "images_per_s": round(count / seconds, 2),
                             "mp_per_s": round(megapixels / seconds, 2), "peak_rss_mb": peak, "status": status}
        with serve({"model_path": args.model}) as server:
            results["nuclei-client → python -m app, requests"] = client_rates(images, count, server.url, env)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
