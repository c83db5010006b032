"""The training package end to end on a tiny real dataset: train, export, tune, quantize, evaluate."""

import json
import subprocess
import sys
import time
import zipfile

import numpy as np
import onnx
import pytest

from nuclei.card import sha256_file
from nuclei.segmenter import Segmenter
from tests.conftest import ROOT, SAMPLE_NAMES, read_sample, write_kaggle_layout
from training import checkpoint
from training.__main__ import main
from training.data import Dataset, DatasetError, split_ids


@pytest.fixture(scope="module")
def kaggle_dir(tmp_path_factory):
    return write_kaggle_layout(tmp_path_factory.mktemp("stage1_train"))


def test_dataset_reads_folder_and_zip(kaggle_dir, tmp_path):
    folder = Dataset(kaggle_dir)
    archive = tmp_path / "stage1_train.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in kaggle_dir.rglob("*.png"):
            z.write(path, "stage1_train/" + path.relative_to(kaggle_dir).as_posix())
    zipped = Dataset(archive)
    assert folder.ids == zipped.ids and len(folder.ids) == 4
    a, b = folder.load(folder.ids[0]), zipped.load(folder.ids[0])
    assert np.array_equal(a.labels, b.labels) and a.labels.max() > 0


def test_split_is_deterministic_and_disjoint():
    ids = [f"{i:03d}" for i in range(100)]
    train, val = split_ids(ids, 0.1, seed=1)
    assert (train, val) == split_ids(list(reversed(ids)), 0.1, seed=1)
    assert len(val) == 10 and not set(train) & set(val) and len(train) + len(val) == 100
    assert split_ids(ids, 0.1, seed=2)[1] != val


@pytest.mark.parametrize("make", ["missing", "empty_folder", "wrong_layout", "not_zip"])
def test_bad_dataset_path_is_one_line_error(tmp_path, make):
    path = tmp_path / "data"
    if make == "empty_folder":
        path.mkdir()
    elif make == "wrong_layout":
        path.mkdir()
        (path / "a.png").write_bytes(b"x")
    elif make == "not_zip":
        path = tmp_path / "data.zip"
        path.write_text("not a zip")
    with pytest.raises(DatasetError, match="Kaggle DSB2018 layout"):
        Dataset(path)
    result = subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(path), "--run-dir", str(tmp_path / "r")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_smoke_train_export_evaluate(kaggle_dir, tmp_path, capsys):
    run_dir, model = tmp_path / "run", tmp_path / "model" / "smoke.onnx"
    report = tmp_path / "report.csv"
    ids = Dataset(kaggle_dir).ids
    report.write_text("image_id,model_foreground_iou\n" + "".join(
        f"{image_id},{n / 10}\n" for n, image_id in enumerate(ids)))
    assert main(["train", "--smoke", "--data", str(kaggle_dir), "--run-dir", str(run_dir),
                 "--augment", "light", "--hard-report", str(report), "--hard-fraction", "0.34"]) == 0
    for artefact in ("best.weights.h5", "checkpoint.npz", "history.csv", "curves.png", "train.log"):
        assert (run_dir / artefact).exists(), artefact
    config = json.loads((run_dir / "config.json").read_text())
    assert len(config["val_ids"]) >= 1
    assert config["augment"]["scale_range"] == [0.8, 1.25], "--augment light not applied"
    assert "drawing 1 hard images 3.0× as often" in (run_dir / "train.log").read_text()

    assert main(["export", "--run-dir", str(run_dir), "--data", str(kaggle_dir), "--out", str(model)]) == 0
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["export"]["parity_max_abs_diff"] <= 1e-4
    assert card["training"]["validation_ids"] == config["val_ids"]
    ops = {node.op_type for node in onnx.load(str(model)).graph.node}
    assert "ConvTranspose" not in ops and "Pad" not in ops, "upsampling not simplified"

    assert main(["tune", "--model", str(model), "--data", str(kaggle_dir), "--images", "2"]) == 0
    tuned = json.loads(model.with_suffix(".json").read_text())
    assert tuned["postprocess_tuning"]["images"] == 2
    assert tuned["postprocess_tuning"]["grid"]["seed_erosion"] == [0, 1, 2]  # tried on the grid's best
    assert tuned["postprocess"]["seed_erosion"] in (0, 1, 2)

    assert main(["evaluate", "--model", str(model), "--data", str(kaggle_dir), "--ids", "all",
                 "--update-card"]) == 0
    out = capsys.readouterr().out
    assert "Otsu + connected components" in out and "dsb_score" in out
    metrics = json.loads(model.with_suffix(".json").read_text())["metrics"]
    assert metrics["images"] == 4 and 0 <= metrics["model"]["dsb_score"] <= 1
    Segmenter(model)  # the exported pair loads in the service's class

    int8 = model.with_name("smoke.int8.onnx")
    assert main(["quantize", "--model", str(model), "--out", str(int8), "--data", str(kaggle_dir),
                 "--images", "2"]) == 0
    card8 = json.loads(int8.with_suffix(".json").read_text())
    assert card8["derived"]["from_sha256"] == sha256_file(model)
    assert card8["postprocess"] == tuned["postprocess"] and card8["inference"]["tile"] == 1024
    assert card8["metrics"] == {}, "scores of the float model must not be copied to the INT8 one"
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    image = read_sample(SAMPLE_NAMES[0])[1]
    labels = Segmenter(int8).segment(image)  # a smoke model may find none: the form is what is checked
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1)), "labels 0, 1..N without gaps"


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_same_step_count(kaggle_dir, tmp_path):
    """SIGKILL, the stop nothing can catch, lands while the run is inside its first epoch; the
    same command then finishes the run from the checkpoint, at the planned step count."""
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(kaggle_dir), "--run-dir", str(run_dir), "--epochs", "2",
            "--steps-per-epoch", "10", "--batch-size", "2", "--val-fraction", "0.34", "--augment", "scaled",
            "--precision", "float32", "--checkpoint-minutes", "0"]
    state_file = run_dir / "checkpoint.npz"
    with subprocess.Popen([sys.executable, "-m", "training", *args], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        while not (state_file.exists() and checkpoint.load(state_file)[0].step >= 3):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)  # polling for the third step, not waiting on a speed
        proc.kill()
    killed = checkpoint.load(state_file)[0]
    assert 3 <= killed.step < 20 and not killed.done
    assert main(args) == 0
    state, _weights, optimizer = checkpoint.load(state_file)
    assert state.step == 20 and [e["epoch"] for e in state.epochs] == [0, 1]
    assert state.legs[-1]["from_step"] == killed.step and state.legs[-1]["to_step"] == 20
    assert f"at step {killed.step} of 20" in (run_dir / "train.log").read_text()
    assert int(optimizer[0]) == 20, "the optimiser's step count (the LR schedule) resumed too"
    assert (run_dir / "final.weights.h5").exists()
    assert main(args) == 0  # a finished run is left as it is
    assert checkpoint.load(state_file)[0].step == 20
