"""One naming for every wing (docs/for-pipelines.md#output-names): the page's zip, nuclei-client
and nuclei-batch, run on the same folder, write the same file names, the same summary columns
(nuclei.naming.SUMMARY_COLUMNS) with the same values, rows by path, and the same tables. With a
stained-tissue specialist among the models served, every wing sends the H&E image to it and
says so alike (model_name, model_version, model_sha256, model_route)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile

from batch.cli import main as batch
from nuclei.naming import MODEL_COLUMNS, SUMMARY_COLUMNS
from nuclei.segmenter import Segmenter
from tests.channels import layouts
from tests.conftest import ROOT, SAMPLES, VERSION
from tests.models import add_model
from tests.web.conftest import serve, web_app

SAME = ("path", "width", "height", "count", "diameter", "flag", "warning", "status", "error", *MODEL_COLUMNS,
        "output")
"""Columns every wing fills alike; `quality` to 1e-3 (batch computes it in-process); `seconds` differ."""
SPECIALIST = "stained-tissue.int8"  # a copy of the served model whose card claims colour tissue


def folder(root: Path) -> Path:
    """Samples in two folders, two inputs of one stem, and a two-channel OME-TIFF (a warning)."""
    plate = root / "plate"
    (plate / "well B7").mkdir(parents=True)
    (plate / "a.png").write_bytes((SAMPLES / "fluorescence_256x256.png").read_bytes())
    he = cv2.imread(str(SAMPLES / "he_stained_256x320.png"), cv2.IMREAD_UNCHANGED)
    tifffile.imwrite(plate / "a.tif", np.ascontiguousarray(he[..., 2::-1]))
    (plate / "well B7" / "brightfield.png").write_bytes((SAMPLES / "brightfield_320x320.png").read_bytes())
    (plate / "two channels.ome.tif").write_bytes(layouts()["ome"])
    return plate


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    return list(reader.fieldnames or []), list(reader)


def labels(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    add_model(folder, SPECIALIST, version="9.9.9", modalities=["colour tissue"])
    return folder


@pytest.fixture(scope="module")
def routing_server(web_segmenter: Segmenter, models_dir: Path) -> Iterator[str]:
    """The service serving the default model and the specialist (MODELS_DIR)."""
    with serve(web_app(web_segmenter, queue_depth=2, api_key=None, models_dir=models_dir)) as url:
        yield url


@pytest.fixture
def three_wings(page, routing_server: str, models_dir: Path, tmp_path: Path):
    server = routing_server
    plate = folder(tmp_path / "in")
    page.goto(server + "/")
    page.get_by_test_id("folder").set_input_files(plate)
    page.wait_for_function(
        "() => /^4\\/4 images.*finished$/.test(document.querySelector('[data-testid=progress-text]').textContent)")
    with page.expect_download() as download:
        page.get_by_test_id("zip").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        from_page = {name: archive.read(name) for name in archive.namelist()}
    client_out = tmp_path / "client"
    subprocess.run([sys.executable, "-m", "client", str(plate.parent), str(client_out), "--url", server, "--quiet",
                    "--formats", "labels,geojson,measurements"], cwd=ROOT, check=True, timeout=300)
    from_client = {p.relative_to(client_out).as_posix(): p.read_bytes() for p in client_out.rglob("*") if p.is_file()}
    batch_out = tmp_path / "batch"
    assert batch([str(plate.parent), str(batch_out), "--models-dir", str(models_dir), "--workers", "1",
                  "--quiet"]) == 0
    return from_page, from_client, batch_out


def test_the_page_the_client_and_the_batch_job_name_and_fill_their_outputs_alike(three_wings) -> None:
    from_page, from_client, batch_out = three_wings
    assert sorted(from_page) == sorted(from_client), "the same files under the same names"
    assert sorted(n for n in from_page if n != "summary.csv") == sorted(
        f"plate/{stem}.{suffix}" for stem in ("a.png", "a.tif", "two channels.ome", "well B7/brightfield")
        for suffix in ("labels.png", "geojson", "measurements.csv"))
    batch_labels = {p.relative_to(batch_out / "labels").as_posix(): p.read_bytes()
                    for p in (batch_out / "labels").rglob("*.labels.png")}
    assert sorted(batch_labels) == sorted(n for n in from_page if n.endswith(".labels.png"))

    page_columns, page_rows = read_csv(from_page["summary.csv"])
    client_columns, client_rows = read_csv(from_client["summary.csv"])
    images = pq.read_table(batch_out / "images.parquet")
    assert page_columns == client_columns == list(SUMMARY_COLUMNS) == images.column_names
    batch_rows = images.to_pylist()
    paths = [r["path"] for r in page_rows]
    assert paths == sorted(paths) == [r["path"] for r in client_rows] == [r["path"] for r in batch_rows]

    for mine, theirs, row in zip(page_rows, client_rows, batch_rows, strict=True):
        assert {c: mine[c] for c in SAME} == {c: theirs[c] for c in SAME}
        assert float(mine["quality"]) == float(theirs["quality"]) == pytest.approx(row["quality"], abs=1e-3)
        as_text = {c: "" if row[c] is None else str(row[c]) for c in SAME}
        assert {c: mine[c] for c in SAME} == as_text, row["path"]
    warned = {r["path"] for r in client_rows if r["warning"]}
    assert warned == {"plate/two channels.ome.tif"}
    routed = {r["path"]: (r["model_name"], r["model_version"], r["model_route"]) for r in batch_rows}
    assert routed == {"plate/a.tif": (SPECIALIST, "9.9.9", "modality: colour tissue"),
                      **{p: ("nuclei-unet.int8", VERSION, "default") for p in routed if p != "plate/a.tif"}}
    assert len({r["model_sha256"] for r in batch_rows}) == 1, "a copy: the same model file under another name"

    for name, data in from_page.items():
        if name != "summary.csv":
            assert data == from_client[name], f"{name}: the same bytes from the page and the client"
    nuclei = pq.read_table(batch_out / "nuclei.parquet").to_pylist()
    for row in client_rows:
        stem = f"{row['output']}"
        assert np.array_equal(labels(batch_labels[f"{stem}.labels.png"]), labels(from_client[f"{stem}.labels.png"]))
        _, table = read_csv(from_client[f"{stem}.measurements.csv"])
        mine = [n for n in nuclei if n["path"] == row["path"]]
        assert len(mine) == len(table) == int(row["count"])
        for n, line in zip(mine, table, strict=True):
            for column, value in n.items():
                if column == "path":
                    continue
                expected = str(value) if isinstance(value, bool) else value  # touches_border: True/False
                assert (line[column] if isinstance(value, bool) else type(value)(line[column])) == expected, column
