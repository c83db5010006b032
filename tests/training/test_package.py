"""`python -m training package` (what `make package` runs) on both served models: each
package passes `bioimageio test`, says what the issue asks (axes, halo, opset, tolerance,
citation) and its maps, post-processed with the thresholds it carries, are the service's nuclei."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from nuclei.card import sha256_file
from nuclei.postprocess import Thresholds, instances
from nuclei.segmenter import Segmenter
from tests.conftest import FLOAT_MODEL, MODEL, ROOT, read_sample

MODELS = [FLOAT_MODEL, MODEL]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "training", "package", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["nuclei-unet.bioimageio.zip", "nuclei-unet.int8.bioimageio.zip"]
    return out


def zipped(packages: Path, model: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(packages / f"{model.stem}.bioimageio.zip")


def rdf(packages: Path, model: Path) -> dict:
    return yaml.safe_load(zipped(packages, model).read("bioimageio.yaml"))


def npy(packages: Path, model: Path, name: str) -> np.ndarray:
    with zipped(packages, model).open(name) as f:
        return np.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_bioimageio_test_passes(packages: Path, model: Path) -> None:
    cli = BIN / "bioimageio"
    assert cli.is_file(), "bioimageio missing: make test (pip install -e '.[package]' 'bioimageio.spec==0.5.14.3')"
    offline = os.environ | {"BIOIMAGEIO_PERFORM_IO_CHECKS": "false"}
    done = subprocess.run([str(cli), "test", str(packages / f"{model.stem}.bioimageio.zip")], cwd=packages,
                          capture_output=True, text=True, env=offline)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "Reproduce test outputs from test inputs (onnx)" in report and "❌" not in report


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_package_describes_the_served_model(packages: Path, model: Path) -> None:
    d = rdf(packages, model)
    assert d["format_version"].startswith("0.5") and d["type"] == "model"
    [inp], [out] = d["inputs"], d["outputs"]
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "y", "x", "channel"]
    assert [a.get("halo") for a in out["axes"][1:3]] == [64, 64]  # half the tiles' overlap of 128
    assert out["axes"][3]["channel_names"] == ["foreground", "boundary"]
    assert [p["id"] for p in inp["preprocessing"] if p["id"] != "ensure_dtype"] == ["scale_range", "clip"]
    onnx = d["weights"]["onnx"]
    assert onnx["opset_version"] == 17 and onnx["sha256"] == sha256_file(model)
    assert d["cite"][0]["doi"] == "10.1038/s41592-019-0612-7" and d["license"] == "MIT"
    [tolerance] = d["config"]["bioimageio"]["reproducibility_tolerance"]
    int8 = model.name.endswith(".int8.onnx")
    assert tolerance["mismatched_elements_per_million"] == (30000 if int8 else 100)
    names = set(zipped(packages, model).namelist())
    assert {model.name, "README.md", "cover.png", "test_input.npy", "test_output.npy"} <= names
    cover = cv2.imdecode(np.frombuffer(zipped(packages, model).read("cover.png"), np.uint8), cv2.IMREAD_COLOR)
    assert cover.shape[1] == 2 * cover.shape[0]


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_maps_become_the_services_nuclei(packages: Path, model: Path) -> None:
    """The docs' recipe: the package's output through nuclei.postprocess with its thresholds."""
    maps = npy(packages, model, "test_output.npy")[0]
    thresholds = Thresholds(**rdf(packages, model)["config"]["nuclei"]["postprocess"])
    image = read_sample("fluorescence_256x256")[1]
    expected = Segmenter(model).segment(image, diameter=18.3)  # the sample is at the training scale
    np.testing.assert_array_equal(instances(maps, thresholds), expected)
    raw = npy(packages, model, "test_input.npy")
    np.testing.assert_array_equal(raw[0], image[..., :3])  # raw pixels: the package scales them
    assert rdf(packages, model)["config"]["nuclei"]["card"]["sha256"] == sha256_file(model)
