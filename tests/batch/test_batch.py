"""nuclei-batch on real DSB2018 samples: the service's counts from the model the service routes
each image to (a stained-tissue specialist copied into the models folder answers the H&E
images), each model loaded once per worker, one Parquet row per nucleus, error rows for bad
files, and a job that survives a worker killed halfway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from dask.distributed import Client, LocalCluster
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from batch.cli import main, parse_args
from batch.work import segmenter_for
from nuclei.naming import MODEL_COLUMNS, columns_of_headers
from tests.channels import dapi_png, layouts
from tests.conftest import MODEL, ROOT, SAMPLE_NAMES, VERSION, png_bytes, read_png, read_sample
from tests.models import add_model, edit_card, model_folder

SPECIALIST = ("stained-tissue.int8", "9.9.9", "modality: colour tissue")  # a copy of the model, claiming H&E


def write_images(folder: Path, copies: int) -> list[Path]:
    """The real samples, each also flipped and turned, so every file is a different image."""
    paths = []
    for k in range(copies):
        for name in SAMPLE_NAMES:
            _, image, _ = read_sample(name)
            variant = np.rot90(image[:, ::-1] if k % 2 else image, k // 2)
            path = folder / f"set {k}" / f"{name} – v{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(np.ascontiguousarray(variant)))
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the service and the job serve: the default model (MODEL_PATH, outside) and a
    stained-tissue specialist claiming colour tissue."""
    folder = tmp_path_factory.mktemp("served")
    name, version, _ = SPECIALIST
    add_model(folder, name, version=version, modalities=["colour tissue"])
    return folder


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    """The service serving `models_dir` (this module's own: every comparison is with it)."""
    with TestClient(create_app(Settings(model_path=MODEL, models_dir=models_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> tuple[int, Path, list[Path], dict]:
    """The job on two worker processes, an image per task; then what each worker loaded."""
    source, out = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    paths = write_images(source, copies=2)
    (source / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as workers:
        status = main([str(source), str(out), "--scheduler", cluster.scheduler_address, "--chunk", "1",
                       "--models-dir", str(models_dir), "--quiet"])
        loads = workers.run(segmenter_for.cache_info)
    return status, out, paths, loads


def test_counts_equal_the_service_and_bad_files_are_error_rows(batch_run, client) -> None:
    status, out, paths, _ = batch_run
    rows = {Path(r["path"].removeprefix("file://")).name: r for r in pq.read_table(out / "images.parquet").to_pylist()}
    assert status == 1, "a failed image makes the exit status 1"
    corrupt = rows.pop("corrupt.png")
    assert corrupt["status"] == "error" and [corrupt[c] for c in MODEL_COLUMNS] == [None] * 4, "no model answered"
    assert sorted(rows) == sorted(p.name for p in paths)
    for path in paths:
        served = client.post("/segment", files={"file": (path.name, path.read_bytes(), "image/png")})
        row = rows[path.name]
        assert (row["status"], row["count"]) == ("ok", int(served.headers["X-Nuclei-Count"])), path.name
        assert row["diameter"] == float(served.headers["X-Nucleus-Diameter"]) > 0, path.name
        assert {c: row[c] for c in MODEL_COLUMNS} == columns_of_headers(served.headers), path.name


def test_each_image_goes_to_the_model_its_modality_routes_to(batch_run) -> None:
    _, out, paths, _ = batch_run
    rows = {Path(r["path"]).name: r for r in pq.read_table(out / "images.parquet").to_pylist()}
    routed = {(rows[p.name]["model_name"], rows[p.name]["model_version"], rows[p.name]["model_route"])
              for p in paths if p.name.startswith("he_stained")}
    default = {(rows[p.name]["model_name"], rows[p.name]["model_version"], rows[p.name]["model_route"])
               for p in paths if not p.name.startswith("he_stained")}
    assert routed == {SPECIALIST} and default == {("nuclei-unet.int8", VERSION, "default")}


def test_each_worker_loads_a_model_once_not_once_per_image(batch_run) -> None:
    _, _, paths, loads = batch_run
    calls = [info.hits + info.misses for info in loads.values()]
    assert len(loads) == 2 and sum(calls) == len(paths), "one call per image segmented"
    assert all(info.misses <= 2 for info in loads.values()), f"two models, each loaded once per worker: {loads}"
    assert sum(info.misses for info in loads.values()) <= 4 < len(paths)


def test_nuclei_table_has_one_row_per_nucleus_and_labels_mirror_the_tree(batch_run) -> None:
    _, out, paths, _ = batch_run
    images = pq.read_table(out / "images.parquet").to_pylist()
    nuclei = pq.read_table(out / "nuclei.parquet").to_pylist()
    assert len(nuclei) == sum(r["count"] or 0 for r in images)
    for row in images:
        ids = sorted(n["id"] for n in nuclei if n["path"] == row["path"])
        assert ids == list(range(1, (row["count"] or 0) + 1))
    for path in paths:
        label_png = out / "labels" / path.parent.name / f"{path.stem}.labels.png"
        assert label_png.stat().st_size > 0, label_png


@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_no_image(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    paths = write_images(source, copies=8)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        job = subprocess.Popen(
            [sys.executable, "-m", "batch", str(source), str(out), "--scheduler", cluster.scheduler_address,
             "--chunk", "1", "--quiet"], env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not list(out.glob("labels/*/*.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        done_before_kill = len(list(out.glob("labels/*/*.png")))
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        assert job.wait(timeout=300) == 0
    assert 0 < done_before_kill < len(paths), "the worker was killed while the job ran"
    rows = pq.read_table(out / "images.parquet").to_pylist()
    assert len(rows) == len(paths) and {r["status"] for r in rows} == {"ok"}


def test_bad_files_read_as_the_service_answers_them(batch_run, client) -> None:
    _, out, _, _ = batch_run
    rows = {Path(r["path"]).name: r for r in pq.read_table(out / "images.parquet").to_pylist()}
    served = client.post("/segment", files={"file": ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)})
    assert rows["corrupt.png"]["error"] == f"{served.status_code} {served.json()['detail']}"
    assert rows["corrupt.png"]["error"].startswith("400 ")


def labels_written(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / "labels").rglob("*.labels.png")}


def test_one_stem_two_images_and_a_macos_file_give_two_results_and_a_rerun_redoes_nothing(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "a.png").write_bytes(read_sample("fluorescence_256x256")[0])
    tifffile.imwrite(source / "a.tif", read_sample("he_stained_256x320")[1])
    (source / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble, not an image
    (source / ".thumbnails").mkdir()
    (source / ".thumbnails" / "a.png").write_bytes(read_sample("fluorescence_256x256")[0])
    assert main([str(source), str(out), "--workers", "1", "--quiet"]) == 0
    rows = {Path(r["path"]).name: r for r in pq.read_table(out / "images.parquet").to_pylist()}
    assert sorted(rows) == ["a.png", "a.tif"] and {r["status"] for r in rows.values()} == {"ok"}
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.png.labels.png", "a.tif.labels.png"]
    shapes = {"a.png": (256, 256), "a.tif": read_sample("he_stained_256x320")[1].shape[:2]}
    for name, row in rows.items():  # each its own image's answer
        labels = read_png((out / "labels" / f"{name}.labels.png").read_bytes())
        assert row["output"] == name and labels.shape == shapes[name] and labels.max() == row["count"] > 0
    nuclei = pq.read_table(out / "nuclei.parquet").to_pylist()
    written = labels_written(out)
    assert main([str(source), str(out), "--workers", "1", "--quiet"]) == 0
    assert labels_written(out) == written, "nothing redone"
    assert pq.read_table(out / "images.parquet").to_pylist() == list(rows.values())
    assert pq.read_table(out / "nuclei.parquet").to_pylist() == nuclei
    assert sorted(p.name for p in out.iterdir()) == ["images.parquet", "labels", "nuclei.parquet"]


@pytest.mark.slow
def test_a_job_killed_mid_folder_leaves_partial_files_and_a_rerun_completes_it(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    paths = write_images(source, copies=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        job = subprocess.Popen(
            [sys.executable, "-m", "batch", str(source), str(out), "--scheduler", cluster.scheduler_address,
             "--chunk", "1", "--checkpoint", "1", "--quiet"], env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not list(out.glob("parts.partial/images-*.parquet")) and time.monotonic() < deadline:
            assert job.poll() is None, "the job ended before it was killed"
            time.sleep(0.05)
        job.send_signal(signal.SIGKILL)
        job.wait()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["INCOMPLETE", "labels", "parts.partial"], "no table that looks whole"
    assert "segmentation started" in (out / "INCOMPLETE").read_text()
    parts = [r for p in sorted(out.glob("parts.partial/images-*.parquet")) for r in pq.read_table(p).to_pylist()]
    done = {r["output"] for r in parts}
    assert 0 < len(done) < len(paths)
    kept = {p: m for p, m in labels_written(out).items() if str(p.relative_to(out / "labels")).removesuffix(
        ".labels.png") in done}
    assert main([str(source), str(out), "--workers", "1", "--quiet"]) == 0
    rows = pq.read_table(out / "images.parquet").to_pylist()
    assert sorted(r["output"] for r in rows) == sorted(str(p.relative_to(source).with_suffix("")) for p in paths)
    assert {r["status"] for r in rows} == {"ok"}
    nuclei = pq.read_table(out / "nuclei.parquet").to_pylist()
    for row in rows:
        assert sorted(n["id"] for n in nuclei if n["path"] == row["path"]) == list(range(1, row["count"] + 1))
    assert {p: m for p, m in labels_written(out).items() if p in kept} == kept, "what was done is not redone"
    assert sorted(p.name for p in out.iterdir()) == ["images.parquet", "labels", "nuclei.parquet"]


def test_channel_on_a_folder_segments_that_channel_and_without_it_every_row_warns(tmp_path: Path, client) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name, data in layouts().items():
        (source / f"{name}.tif").write_bytes(data)
    expected = int(client.post("/segment", files={"file": ("dapi.png", dapi_png(), "image/png")})
                   .headers["X-Nuclei-Count"])
    assert main([str(source), str(tmp_path / "c1"), "--workers", "1", "--quiet", "--channel", "1"]) == 0
    rows = pq.read_table(tmp_path / "c1" / "images.parquet").to_pylist()
    assert [r["path"] for r in rows] == sorted(f"{name}.tif" for name in layouts()), "relative paths, by path"
    assert {(r["count"], r["warning"]) for r in rows} == {(expected, "")}
    assert main([str(source), str(tmp_path / "c0"), "--workers", "1", "--quiet"]) == 0
    for row in pq.read_table(tmp_path / "c0" / "images.parquet").to_pylist():
        assert "2 channels" in row["warning"] and "channel 0 was segmented" in row["warning"]
        assert row["count"] != expected
    assert main([str(source), str(tmp_path / "c2"), "--workers", "1", "--quiet", "--channel", "2"]) == 1
    assert {r["error"] for r in pq.read_table(tmp_path / "c2" / "images.parquet").to_pylist()} == \
        {"422 channel=2 is out of range: the image has 2 channel(s) (0..1)"}


def test_each_image_has_the_services_quality_and_flag(batch_run, client) -> None:
    _, out, paths, _ = batch_run
    rows = {Path(r["path"].removeprefix("file://")).name: r for r in pq.read_table(out / "images.parquet").to_pylist()}
    assert rows["corrupt.png"]["quality"] is None and rows["corrupt.png"]["flag"] is None
    for path in paths:
        served = client.post("/segment", params={"quality": "true"},
                             files={"file": (path.name, path.read_bytes(), "image/png")})
        row = rows[path.name]
        assert row["quality"] == pytest.approx(float(served.headers["X-Segmentation-Quality"]), abs=1e-3), path.name
        assert row["flag"] == served.headers["X-Segmentation-Flag"]
    assert {rows[p.name]["flag"] for p in paths} == {"ok", "check"}  # the H&E sample's variants are flagged


def test_no_quality_leaves_the_columns_empty(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    path = source / "a.png"
    path.parent.mkdir()
    path.write_bytes(read_sample(SAMPLE_NAMES[0])[0])
    assert main([str(source), str(out), "--workers", "1", "--quiet", "--no-quality"]) == 0
    (row,) = pq.read_table(out / "images.parquet").to_pylist()
    assert row["status"] == "ok" and row["count"] > 0
    assert (row["quality"], row["flag"]) == (None, None)


def test_model_by_name_is_found_in_the_models_folder_as_the_service_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = model_folder(tmp_path / "served")
    special = add_model(folder, "special", version="7.7.7")
    monkeypatch.setenv("MODELS_DIR", str(folder))  # the service's setting, read by nuclei-batch too
    source, out = tmp_path / "in", tmp_path / "out"
    write_images(source, copies=1)
    assert parse_args([str(source), str(out), "--model", "special"]).model == str(special)
    assert parse_args([str(source), str(out), "--model", str(special)]).model == str(special), "a path as before"
    with pytest.raises(SystemExit) as refused:
        parse_args([str(source), str(out), "--model", "stained"])
    assert refused.value.code == 2
    expected = f"--model: unknown model 'stained'; available: nuclei-unet.int8, special (in {folder})"
    assert expected in capsys.readouterr().err
    assert main([str(source), str(out), "--model", "special", "--workers", "1", "--no-quality", "--quiet"]) == 0
    rows = pq.read_table(out / "images.parquet").to_pylist()
    assert len(rows) == len(SAMPLE_NAMES) and {r["model_version"] for r in rows} == {"7.7.7"}
    assert {(r["model_name"], r["model_route"]) for r in rows} == {("special", "requested")}
    edit_card(special, sha256="0" * 64)  # refused before any worker starts, in one line
    capsys.readouterr()
    assert main([str(source), str(tmp_path / "refused"), "--model", "special", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"nuclei-batch: model: {special} does not match its card")
