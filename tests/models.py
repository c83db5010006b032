"""Model folders for the registry's tests: the committed models copied under other names.

A copy keeps the ONNX bytes, so its card's sha256 still matches; only the card's name,
version or modalities change, which is all the registry routes and reloads by."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.conftest import FLOAT_MODEL, MODEL


def add_model(folder: Path, name: str, *, source: Path = MODEL, **card: object) -> Path:
    """`folder/NAME.onnx` and its card: a copy of `source` whose card says `name` and `card`'s
    fields (modalities=[…], version=…). The card first, then the model, as the fine-tune writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    write_card(path, json.loads(source.with_suffix(".json").read_text()) | {"name": name, "file": path.name} | card)
    replace_file(path, source.read_bytes())
    return path


def write_card(model: Path, fields: dict[str, object]) -> None:
    """The card beside `model`, replaced atomically (as the fine-tune writes it)."""
    replace_file(model.with_suffix(".json"), json.dumps(fields, indent=2).encode())


def replace_file(path: Path, data: bytes) -> None:
    """`path` replaced atomically by `data`, its mtime later than the old file's even within
    one tick of a coarse clock, so that a refresh sees the change whatever the size."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, max(stat.st_mtime_ns, old + 1_000_000)))


def edit_card(model: Path, **fields: object) -> None:
    write_card(model, json.loads(model.with_suffix(".json").read_text()) | fields)


def model_folder(root: Path) -> tuple[Path, Path]:
    """(folder, default model): a folder holding a copy of the served INT8 model, as it is named."""
    folder = root / "models"
    folder.mkdir(parents=True, exist_ok=True)
    default = folder / MODEL.name
    shutil.copyfile(MODEL, default)
    shutil.copyfile(MODEL.with_suffix(".json"), default.with_suffix(".json"))
    return folder, default


def add_float_model(folder: Path, name: str, **card: object) -> Path:
    """A copy of the float32 export (no `derived` section: its precision is float32)."""
    return add_model(folder, name, source=FLOAT_MODEL, **card)
