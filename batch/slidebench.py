"""Whole-slide benchmark: a synthetic-but-real slide, and the job's peak memory and speed.

    python -m batch.slidebench make /tmp/slide/s12k.tif --size 12000
    python -m batch.slidebench run /tmp/slide/s12k.tif /tmp/slide/out12k [nuclei-batch options]

`make` tiles the real DSB2018 samples (samples/*.png, flipped and turned) over a dark
background into a tiled, deflated BigTIFF, written tile by tile: never whole in memory.
Every sample is first brought to one intensity scale (`dark_grey`), as the fields of one
well or one section share an exposure, so one slide-wide normalisation suits all of them.

`run` starts `nuclei-batch` and samples /proc every 0.2 s for the job and all its
descendants (scheduler, nannies, workers): it prints the sum of their peak RSS (VmHWM, an
upper bound of what they held at once), the largest total RSS seen at one instant, the
largest single process, and the throughput in megapixels per second. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from nuclei.imageio import decode_image
from nuclei.normalize import normalize

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def dark_grey(image: np.ndarray) -> np.ndarray:
    """A sample as a uint8 grey image with bright nuclei on a black background whose own
    normalisation is the identity: ≥ 2 % of it is 0 and ≥ 1 % is 255, so its 1st and 99.8th
    percentiles are 0 and 255 and `normalize(piece) == piece / 255`."""
    grey = normalize(image).mean(axis=2)
    low, high = np.percentile(grey, (2, 99))
    return np.clip((grey - low) / max(high - low, 1e-6) * 255, 0, 255).round().astype(np.uint8)


def pieces() -> list[np.ndarray]:
    """Every sample, dark grey, in 4 orientations."""
    out = []
    for path in sorted(SAMPLES.glob("*.png")):
        base = dark_grey(decode_image(path.read_bytes()))
        out += [np.ascontiguousarray(v) for v in (base, base[::-1], np.rot90(base), np.rot90(base[:, ::-1]))]
    return out


def _cell_tiles(height: int, width: int, tile: int, cell: int, seed: int) -> Iterator[np.ndarray]:
    """Tiles of a slide made of `cell`-sized squares, each holding one piece at a random
    offset on a black background, generated a tile row at a time."""
    parts = pieces()
    cols = -(-width // cell)
    for ty in range(0, height, tile):
        band = np.zeros((min(tile, height - ty), width), np.uint8)
        for cy in range(ty // cell, (min(ty + tile, height) - 1) // cell + 1):
            row_rng = np.random.default_rng([seed, cy])
            for cx in range(cols):
                piece = parts[int(row_rng.integers(len(parts)))]
                h, w = piece.shape
                oy = cy * cell + int(row_rng.integers(0, max(1, cell - h)))
                ox = cx * cell + int(row_rng.integers(0, max(1, cell - w)))
                y0, y1 = max(oy, ty), min(oy + h, ty + band.shape[0], height)
                x1 = min(ox + w, width)
                if y0 < y1 and ox < x1:
                    band[y0 - ty : y1 - ty, ox:x1] = piece[y0 - oy : y1 - oy, : x1 - ox]
        for tx in range(0, width, tile):
            yield band[:, tx : tx + tile]


def make(path: str, size: int, tile: int = 512, cell: int = 736, seed: int = 0) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(_cell_tiles(size, size, tile, cell, seed), shape=(size, size), dtype=np.uint8,
                  tile=(tile, tile), compression="zlib", maxworkers=1)


def _tree(root: int) -> list[int]:
    """The process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes; (0, 0) once it is gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0] + ":"
                if key in values:
                    values[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


def run(image: str, out: str, options: list[str]) -> dict[str, object]:
    command = [sys.executable, "-m", "batch", image, out, "--quiet", *options]
    start = time.perf_counter()
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    top_total = 0
    while job.poll() is None:
        total = 0
        for pid in _tree(job.pid):
            rss, hwm = _memory(pid)
            total += rss
            if hwm:
                peaks[pid] = max(peaks.get(pid, 0), hwm)
                if pid not in names:
                    try:
                        names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80].decode()
                    except OSError:
                        names[pid] = "?"
        top_total = max(top_total, total)
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    stderr = job.stderr.read() if job.stderr else ""
    with tifffile.TiffFile(image) as tif:
        level = tif.series[0].levels[0]
        pixels = int(np.prod([n for a, n in zip(level.axes, level.shape, strict=True) if a in "YX"]))
    mib = 1 << 20
    return {
        "image": image, "pixels": pixels, "status": job.returncode, "seconds": round(seconds, 1),
        "mp_per_s": round(pixels / seconds / 1e6, 3),
        "sum_of_peak_rss_mib": round(sum(peaks.values()) / mib),
        "peak_total_rss_mib": round(top_total / mib),
        "largest_process_mib": round(max(peaks.values(), default=0) / mib),
        "processes": {f"{pid} {names.get(pid, '')}": round(v / mib) for pid, v in sorted(peaks.items())},
        "stderr": stderr.strip().splitlines()[-3:],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batch.slidebench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write a synthetic slide")
    m.add_argument("path")
    m.add_argument("--size", type=int, default=12000)
    m.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run", help="run nuclei-batch on a slide and measure it")
    r.add_argument("image")
    r.add_argument("out")
    args, rest = p.parse_known_args(argv)
    if args.command == "make":
        start = time.perf_counter()
        make(args.path, args.size, seed=args.seed)
        print(f"{args.path}: {args.size}×{args.size} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        return 0
    result = run(args.image, args.out, rest)
    print(json.dumps(result, indent=1))
    return 0 if result["status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
