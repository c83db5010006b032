"""`python -m bench.throughput`: the same DSB2018 images three ways, in one run — a plain
in-process loop, `nuclei-batch` on a LocalCluster, `nuclei-client` against `python -m app` —
with images/s, MP/s and the peak RSS of every process involved (sampled over the whole tree).

    python -m bench.throughput --images 200          # needs ../shared/datasets/dsb2018
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from bench.proc import descendants, peak_rss_mb, rss_mb
from bench.server import ROOT, serve

DATA = ROOT.parent / "shared" / "datasets" / "dsb2018" / "stage1_train.zip"
LOOP = """
import sys, time
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
    import cv2

    with zipfile.ZipFile(DATA) as z:
        names = sorted(n for n in z.namelist() if "/images/" in n and n.endswith(".png"))[:count]
        for name in names:
            (folder / Path(name).name).write_bytes(z.read(name))
    pixels = 0
    for path in folder.glob("*.png"):
        height, width = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]
        pixels += height * width
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--model", default=str(ROOT / "models" / "nuclei-unet.int8.onnx"))
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {"cores": cores, "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        images = Path(tmp) / "in"
        images.mkdir()
        count, megapixels = extract(args.images, images)
        results.update(images=count, megapixels=round(megapixels, 1))
        runs = {
            "in-process loop (1 process, 2 threads)":
                lambda: timed([sys.executable, "-c", LOOP, str(images), args.model, str(cores)], env=env),
            f"nuclei-batch, LocalCluster ({cores} workers × 1 thread)":
                lambda: timed([sys.executable, "-m", "batch", str(images), f"{tmp}/batch", "--model", args.model,
                               "--quiet"], env=env),
        }
        for name, run in runs.items():
            seconds, peak, status = run()
            results[name] = {"seconds": round(seconds, 1), "images_per_s": round(count / seconds, 2),
                             "mp_per_s": round(megapixels / seconds, 2), "peak_rss_mb": peak, "status": status}
        with serve({"model_path": args.model}) as server:
            seconds, peak, status = timed(
                [sys.executable, "-m", "client", str(images), f"{tmp}/client", "--url", server.url,
                 "--formats", "labels", "--quiet"], server.pid, env=env)
        results["nuclei-client → python -m app (concurrency 2, format labels)"] = {
            "seconds": round(seconds, 1), "images_per_s": round(count / seconds, 2),
            "mp_per_s": round(megapixels / seconds, 2), "peak_rss_mb": peak, "status": status}
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
