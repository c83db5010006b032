"""`nuclei-client IN OUT --url URL`: every PNG/JPEG/TIFF/BMP under IN through the service.

Outputs mirror IN's tree (`<stem>.labels.png`, `<stem>.csv` by default) and land atomically,
so an image whose outputs exist is done: a re-run skips it (resume). OUT/summary.csv has one
row per image. Exit status 0 when every image succeeded, 1 when any failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from client.api import Client, ClientError
from nuclei.imageio import ImageError, PlaneError, read_header

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
OUTPUTS = {"labels": ".labels.png", "measurements": ".csv", "geojson": ".geojson", "rle": ".rle.json",
           "png": ".mask.png"}
SUMMARY = ("path", "width", "height", "count", "status", "error", "model_version", "seconds")


def walk(root: Path) -> Iterator[Path]:
    """Image files under `root`, in a stable order, one directory in memory at a time."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in EXTENSIONS:
                yield Path(folder) / name


def outputs(image: Path, source: Path, out: Path, formats: list[str]) -> dict[str, Path]:
    base = out / image.relative_to(source).parent / image.stem
    return {f: base.with_name(base.name + OUTPUTS[f]) for f in formats}


def write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def process(client: Client, image: Path, rel: str, targets: dict[str, Path]) -> dict[str, Any]:
    """One image: every requested format, or an error row with the server's detail."""
    start = time.perf_counter()
    row: dict[str, Any] = {"path": rel, "width": "", "height": "", "count": "", "status": "ok", "error": "",
                           "model_version": ""}
    data = image.read_bytes()
    try:
        header = read_header(data)
        row.update(width=header.width, height=header.height)
    except (ImageError, PlaneError):
        pass  # the server says what is wrong with it
    try:
        for fmt, path in targets.items():
            result = client.segment(data, format=fmt, filename=image.name)
            write_atomically(path, result.content)
            row.update(count=result.count, model_version=result.model_version)
    except ClientError as exc:
        row.update(status="error", error=exc.detail if exc.status == 0 else f"{exc.status} {exc.detail}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def previous_rows(summary: Path) -> dict[str, dict[str, str]]:
    if not summary.exists():
        return {}
    with summary.open(newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f) if r.get("status") == "ok"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nuclei-client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="IN", type=Path, help="folder of images (walked recursively)")
    p.add_argument("out", metavar="OUT", type=Path, help="folder for the results and summary.csv")
    p.add_argument("--url", default=os.environ.get("NUCLEI_URL", "http://127.0.0.1:8000"),
                   help="the service (env NUCLEI_URL); the API key comes from NUCLEI_API_KEY")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight (default 2)")
    p.add_argument("--formats", default="labels,measurements",
                   help=f"comma-separated, among {', '.join(OUTPUTS)} (default labels,measurements)")
    p.add_argument("--patience", type=float, default=600.0,
                   help="seconds to keep retrying an unreachable or busy server (default 600)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(args.formats) - set(OUTPUTS))
    if unknown or not args.formats:
        p.error(f"unknown format(s) {', '.join(unknown) or '(none)'}; choose among {', '.join(OUTPUTS)}")
    if not args.source.is_dir():
        p.error(f"IN is not a folder: {args.source}")
    return args


def run(args: argparse.Namespace) -> int:
    total = sum(1 for _ in walk(args.source))
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.csv"
    done_before = previous_rows(summary_path)
    failed = 0
    with summary_path.open("w", newline="") as f, Client(args.url, patience_s=args.patience) as client, \
            ThreadPoolExecutor(args.concurrency) as pool, \
            tqdm(total=total, unit="img", disable=args.quiet, smoothing=0.1) as bar:
        writer = csv.DictWriter(f, fieldnames=SUMMARY)
        writer.writeheader()
        pending: set[Future] = set()

        def record(row: dict[str, Any]) -> None:
            nonlocal failed
            failed += row["status"] != "ok"
            writer.writerow(row)
            f.flush()
            bar.update()
            bar.set_postfix(failed=failed)

        for image in walk(args.source):
            rel = image.relative_to(args.source).as_posix()
            targets = outputs(image, args.source, args.out, args.formats)
            if all(p.exists() for p in targets.values()):
                record(done_before.get(rel) or {"path": rel, "status": "ok", "error": "already done"})
                continue
            if len(pending) >= 2 * args.concurrency:  # bounded: 10⁵ files never queue at once
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(future.result())
            pending.add(pool.submit(process, client, image, rel, targets))
        for future in pending:
            record(future.result())
    print(f"{total - failed} of {total} images ok; summary in {summary_path}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
