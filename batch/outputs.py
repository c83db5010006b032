"""How a job writes its results so that a crash never leaves one that looks whole: every
file is written under `<name>.partial` and renamed when the whole job is done, and
OUT/INCOMPLETE exists from the start until then, saying what went wrong. Folder and slide
jobs alike; OUT is a folder or any fsspec URL."""

from __future__ import annotations

import fsspec

MARKER = "INCOMPLETE"


class Outputs:
    def __init__(self, out: str, names: dict[str, str]) -> None:
        """`names`: key → file name in OUT, e.g. {"images": "images.parquet"}."""
        self.fs, root = fsspec.core.url_to_fs(out)
        self.fs.makedirs(root, exist_ok=True)
        base = out.rstrip("/")
        self.marker = f"{base}/{MARKER}"
        self.final = {key: f"{base}/{name}" for key, name in names.items()}
        self.partial = {key: f"{url}.partial" for key, url in self.final.items()}

    def _write_marker(self, text: str) -> None:
        with fsspec.open(self.marker, "w", encoding="utf-8") as f:
            f.write(text)

    def started(self, source: str) -> None:
        self._write_marker(f"{source}: segmentation started; the .partial files are not complete\n")

    def failed(self, source: str, message: str) -> None:
        self._write_marker(f"{source}: {message}\nThe .partial files in this folder are incomplete.\n")

    def done(self) -> None:
        for key, partial in self.partial.items():
            self.fs.mv(self.fs._strip_protocol(partial), self.fs._strip_protocol(self.final[key]))
        self.fs.rm(self.fs._strip_protocol(self.marker))


def write_whole(url: str, content: bytes) -> None:
    """One file written as `<url>.partial` and renamed: a file that exists is complete."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path + ".partial", "wb") as f:
        f.write(content)
    fs.mv(path + ".partial", path)
