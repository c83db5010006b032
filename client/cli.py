"""`nuclei-client IN OUT --url URL`: every PNG/JPEG/TIFF/BMP under IN through the service.

Outputs mirror IN's tree (`<stem>.labels.png`, `<stem>.measurements.csv` by default), named
by the one rule of `nuclei.naming` (`a.png` beside `a.tif`: `a.png.labels.png`, `a.tif.labels.png`;
hidden and system files skipped), all from one request per image, and land atomically.
OUT/summary.csv has one row per image, with the output stem it wrote and how far to trust the
result (`quality`, and `flag` `check` for images to look at: `nuclei.quality`): a re-run skips an image
whose row says ok under the same stem and whose outputs exist (resume), and redoes any other.
Exit status 0 when every image succeeded, 1 when any failed, 2 when the server cannot be
reached (checked before the run; during it, for longer than --patience: the images done are kept).
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

from client.api import Client, ClientError, Unreachable
from nuclei.encode import OutputFormat, spreadsheet_safe
from nuclei.errors import error_text
from nuclei.imageio import ImageError, PlaneError, read_header
from nuclei.naming import SUMMARY_COLUMNS, columns_of_headers, is_image, output_name, output_stems, skipped

OUTPUTS = [f.value for f in OutputFormat]
SUMMARY = SUMMARY_COLUMNS


def walk(root: Path) -> Iterator[tuple[Path, str, str]]:
    """(image file, path relative to `root`, output stem) of every image under `root`, in a
    stable order, one directory in memory at a time; hidden and system folders are not entered."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not skipped(d))
        base = Path(folder).relative_to(root).as_posix()
        rels = [name if base == "." else f"{base}/{name}" for name in files if is_image(name)]
        for rel, stem in sorted(output_stems(rels).items()):
            yield root / rel, rel, stem


def outputs(out: Path, stem: str, formats: list[str]) -> dict[str, Path]:
    return {f: out / output_name(stem, OutputFormat(f)) for f in formats}


def write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def process(client: Client, image: Path, rel: str, stem: str, targets: dict[str, Path],
            quality: bool = True, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One image: every requested format from one request, or an error row with the server's detail.
    `params`: the query parameters (diameter, threshold, pixel_size, page, channel, model); None: not sent."""
    params = params or {}
    start = time.perf_counter()
    row: dict[str, Any] = {"path": rel, "width": "", "height": "", "count": "", "status": "ok", "error": "",
                           **columns_of_headers({}), "output": stem}
    data = image.read_bytes()
    try:
        header = read_header(data, params.get("page") or 0, params.get("channel"))
        row.update(width=header.width, height=header.height)
    except (ImageError, PlaneError):
        pass  # the server says what is wrong with it
    try:
        bodies, result = client.outputs(data, list(targets), filename=image.name, quality=quality or None, **params)
        for fmt, path in targets.items():
            write_atomically(path, bodies[fmt])
        row.update(count=result.count, quality=result.quality, flag=result.flag, diameter=result.diameter,
                   warning=result.warning, **columns_of_headers(result.headers))
    except ClientError as exc:
        if isinstance(exc, Unreachable):
            raise
        row.update(status="error", error=error_text(exc.status, exc.detail))
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def previous_rows(summary: Path) -> dict[str, dict[str, str]]:
    """The ok rows of a previous run, by their (spreadsheet-safe) path."""
    if not summary.exists():
        return {}
    with summary.open(newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f) if r.get("status") == "ok"}


def table_row(row: dict[str, Any]) -> dict[str, Any]:
    """A summary row as written: text that a spreadsheet would run as a formula neutralised."""
    return {k: spreadsheet_safe(v) if isinstance(v, str) else v for k, v in row.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nuclei-client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="IN", type=Path, help="folder of images (walked recursively)")
    p.add_argument("out", metavar="OUT", type=Path, help="folder for the results and summary.csv")
    p.add_argument("--url", default=os.environ.get("NUCLEI_URL", "http://127.0.0.1:8000"),
                   help="the service (env NUCLEI_URL); the API key comes from NUCLEI_API_KEY")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight (default 2)")
    p.add_argument("--formats", default="labels,measurements",
                   help=f"comma-separated, among {', '.join(OUTPUTS)} (default labels,measurements); "
                        "all from one request per image")
    p.add_argument("--patience", type=float, default=600.0,
                   help="seconds to keep retrying an unreachable or busy server (default 600)")
    p.add_argument("--no-quality", dest="quality", action="store_false",
                   help="skip the trust signal (summary.csv's quality and flag): one model pass less per image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    plane = p.add_argument_group("what to segment, as the service's query parameters (POST /segment)")
    plane.add_argument("--model", help="the model, by name (the server's GET /models); default: the server "
                       "picks by the image's modality, else its default model")
    plane.add_argument("--diameter", type=float, help="median nucleus diameter in pixels (give it for 40×/63× "
                       "images); default: estimated per image")
    plane.add_argument("--threshold", type=float, help="foreground threshold 0..1; default: the model card's")
    plane.add_argument("--pixel-size", type=float, help="µm per pixel, for the µm measurements; default: the "
                       "TIFF's resolution tags")
    plane.add_argument("--page", type=int, help="plane of a TIFF: a Z/T plane by the file's axes, else its page")
    plane.add_argument("--channel", type=int, help="channel of a multi-channel image (the nuclear stain); "
                       "default: channel 0 of several, with a warning in summary.csv")
    args = p.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(args.formats) - set(OUTPUTS))
    if unknown or not args.formats:
        p.error(f"unknown format(s) {', '.join(unknown) or '(none)'}; choose among {', '.join(OUTPUTS)}")
    if not args.source.is_dir():
        p.error(f"IN is not a folder: {args.source}")
    args.params = {"diameter": args.diameter, "threshold": args.threshold, "pixel_size": args.pixel_size,
                   "page": args.page, "channel": args.channel, "model": args.model}
    return args


def sort_summary(path: Path) -> None:
    """summary.csv by path, as every wing orders its rows; written in completion order while
    the run goes, so a crash loses no row."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = sorted(reader, key=lambda r: r["path"])
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    with Client(args.url) as probe:
        try:
            probe.check(model=args.model)
        except ClientError as exc:
            print(f"nuclei-client: {exc.detail}", file=sys.stderr)
            return 2
    total = sum(1 for _ in walk(args.source))
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.csv"
    done_before = previous_rows(summary_path)
    failed = recorded = 0
    with summary_path.open("w", newline="") as f, Client(args.url, patience_s=args.patience) as client, \
            ThreadPoolExecutor(args.concurrency) as pool, \
            tqdm(total=total, unit="img", disable=args.quiet, smoothing=0.1) as bar:
        writer = csv.DictWriter(f, fieldnames=SUMMARY, extrasaction="ignore")
        writer.writeheader()
        pending: set[Future] = set()
        stopped: list[Unreachable] = []  # the server gone for longer than --patience

        def collect(future: Future) -> None:
            try:
                record(future.result())
            except Unreachable as exc:
                stopped.append(exc)
                for other in pending:
                    other.cancel()

        def record(row: dict[str, Any]) -> None:
            nonlocal failed, recorded
            recorded += 1
            failed += row["status"] != "ok"
            writer.writerow(table_row(row))
            f.flush()
            bar.update()
            bar.set_postfix(failed=failed)

        for image, rel, stem in walk(args.source):
            if stopped:
                break
            targets = outputs(args.out, stem, args.formats)
            before = done_before.get(spreadsheet_safe(rel))
            if before and before.get("output") == spreadsheet_safe(stem) and all(p.exists() for p in targets.values()):
                record({**before, "path": rel, "output": stem})
                continue
            if len(pending) >= 2 * args.concurrency:  # bounded: 10⁵ files never queue at once
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    collect(future)
            pending.add(pool.submit(process, client, image, rel, stem, targets, args.quality, args.params))
        for future in pending:
            if not future.cancelled():
                collect(future)
    sort_summary(summary_path)
    if stopped:
        print(f"nuclei-client: {stopped[0].detail}; stopped with {recorded} of {total} images done "
              f"({failed} failed), kept in {summary_path}: run the same command again to go on", file=sys.stderr)
        return 2
    print(f"{total - failed} of {total} images ok; summary in {summary_path}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
