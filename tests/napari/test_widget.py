"""The napari widget on real samples with the committed models: the Labels layer holds what
the service answers for the same image, model and settings, its features the measurements;
`automatic` sends each image to the model the service routes it to; the viewer keeps
processing events while a run is held on purpose; the service URL path."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qtpy.QtCore import QTimer

from app.config import Settings
from app.main import create_app
from bench.server import serve
from napari_nuclei import widget as widget_module
from napari_nuclei.models import AUTOMATIC
from napari_nuclei.widget import SERVICE, SegmentWidget
from nuclei.card import card_path, parse
from nuclei.measure import COLUMNS
from tests.conftest import FLOAT_MODEL, MODEL, VERSION, post, read_png, read_sample
from tests.models import add_model, model_folder

PLUGIN, WIDGET = "nuclei-segmentation", "Segment nuclei"
WAIT_MS = 120_000  # only reached when the run never ends: the assertion then says so


def dock(viewer) -> SegmentWidget:
    """The widget as a user opens it: Plugins › Segment nuclei, found through the entry point."""
    _, found = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(found, SegmentWidget)
    return found


def name_of(model: Path) -> str:
    """The name the service and the picker give the model file: its card's."""
    return parse(card_path(model)).name


def pick(w: SegmentWidget, image: str, model: str = SERVICE, diameter: float = 0, threshold: float = 0) -> None:
    w.image.setCurrentText(image)
    w.source.setCurrentText(model)
    assert w.source.currentText() == model, f"{model} is not in the picker"
    w.diameter.setValue(diameter)
    w.threshold.setValue(threshold)


def items(w: SegmentWidget) -> list[str]:
    return [w.source.itemText(i) for i in range(w.source.count())]


def run(w: SegmentWidget, qtbot, image: str) -> None:
    w.segment()
    qtbot.waitUntil(lambda: f"{image}.labels" in w.viewer.layers and w.button.isEnabled(), timeout=WAIT_MS)


def service_labels(model: Path, data: bytes, **params: object) -> tuple[int, np.ndarray]:
    """(X-Nuclei-Count, label image) of the service running `model`, asked for by name."""
    with TestClient(create_app(Settings(model_path=model))) as c:
        r = post(c, data, "sample.png", format="labels", model=name_of(model), **params)
    assert r.status_code == 200, r.text
    return int(r.headers["x-nuclei-count"]), read_png(r.content)


@pytest.mark.parametrize(("name", "model", "diameter", "threshold"), [
    ("fluorescence_256x256", MODEL, 0, 0),
    ("he_stained_256x320", FLOAT_MODEL, 25.0, 0.7),
])
def test_layer_is_what_the_service_answers(make_napari_viewer, qtbot, name, model, diameter, threshold) -> None:
    data, image, _ = read_sample(name)
    viewer = make_napari_viewer()
    viewer.add_image(image, name=name, rgb=True)
    w = dock(viewer)
    pick(w, name, name_of(model), diameter, threshold)
    run(w, qtbot, name)

    layer = viewer.layers[f"{name}.labels"]
    params = {k: v for k, v in {"diameter": diameter, "threshold": threshold}.items() if v}
    count, expected = service_labels(model, data, **params)
    assert type(layer).__name__ == "Labels"
    assert count > 10
    assert len(np.unique(layer.data)) - 1 == count
    np.testing.assert_array_equal(layer.data, expected)
    features = layer.features
    assert list(features.columns) == ["index", *COLUMNS]
    assert features["index"].tolist() == list(range(1, count + 1))
    assert features["area"].sum() == np.count_nonzero(layer.data)
    assert f"{count} nuclei · {name_of(model)} {VERSION} (requested)" in w.status.text()


def test_automatic_sends_each_image_to_the_model_the_service_routes_it_to(
        make_napari_viewer, qtbot, tmp_path: Path, monkeypatch) -> None:
    folder, default = model_folder(tmp_path)
    add_model(folder, "stained-tissue.int8", modalities=["colour tissue"], version="9.9.9")
    monkeypatch.setenv("NUCLEI_MODELS", str(folder))
    viewer = make_napari_viewer()
    w = dock(viewer)
    assert items(w) == [AUTOMATIC, "nuclei-unet.int8", "stained-tissue.int8", SERVICE]
    assert w.source.currentText() == AUTOMATIC, "automatic is the first choice"
    answered = {}
    with TestClient(create_app(Settings(model_path=default, models_dir=folder))) as service:
        for name in ("he_stained_256x320", "fluorescence_256x256"):
            data, image, _ = read_sample(name)
            viewer.add_image(image, name=name, rgb=True)
            pick(w, name, AUTOMATIC)
            run(w, qtbot, name)
            served = post(service, data, f"{name}.png", format="labels")
            h = served.headers
            answered[name] = (h["x-model-name"], h["x-model-version"], h["x-model-route"])
            assert f"{h['x-model-name']} {h['x-model-version']} ({h['x-model-route']})" in w.status.text()
            np.testing.assert_array_equal(viewer.layers[f"{name}.labels"].data, read_png(served.content))
    assert answered == {"he_stained_256x320": ("stained-tissue.int8", "9.9.9", "modality: colour tissue"),
                        "fluorescence_256x256": ("nuclei-unet.int8", VERSION, "default")}


def test_viewer_processes_events_while_a_run_is_held(make_napari_viewer, qtbot, monkeypatch) -> None:
    started, release = threading.Event(), threading.Event()
    real = widget_module.segment

    def held(*args, **kwargs):
        started.set()
        assert release.wait(WAIT_MS / 1000), "never released"
        return real(*args, **kwargs)

    monkeypatch.setattr(widget_module, "segment", held)
    name = "fluorescence_256x256"
    viewer = make_napari_viewer()
    viewer.add_image(read_sample(name)[1], name=name, rgb=True)
    w = dock(viewer)
    pick(w, name, name_of(MODEL))
    w.segment()
    try:
        qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
        ticks: list[int] = []
        QTimer.singleShot(0, lambda: ticks.append(1))  # runs only if the event loop turns
        qtbot.waitUntil(lambda: ticks == [1], timeout=WAIT_MS)
        viewer.add_points(np.array([[10.0, 10.0]]), name="drawn meanwhile")  # the viewer still edits
        assert not release.is_set() and w.worker.is_running
        assert not w.progress.isHidden() and not w.button.isEnabled()  # the window itself is not shown
        assert f"{name}.labels" not in viewer.layers
    finally:
        release.set()
    qtbot.waitUntil(lambda: w.button.isEnabled(), timeout=WAIT_MS)
    assert w.progress.isHidden()
    assert viewer.layers[f"{name}.labels"].data.max() > 10


@pytest.mark.slow
def test_service_url(make_napari_viewer, qtbot) -> None:
    name = "fluorescence_520x696"
    data, image, _ = read_sample(name)
    viewer = make_napari_viewer()
    viewer.add_image(image, name=name, rgb=True)
    w = dock(viewer)
    pick(w, name)
    with serve() as server:
        w.url.setText(server.url)
        w.segment()
        qtbot.waitUntil(lambda: w.button.isEnabled(), timeout=WAIT_MS)
    count, expected = service_labels(MODEL, data)
    np.testing.assert_array_equal(viewer.layers[f"{name}.labels"].data, expected)
    assert len(viewer.layers[f"{name}.labels"].features) == count
    assert f"nuclei-unet.int8 {VERSION}" in w.status.text()


def test_model_picker_lists_the_models_folder_by_the_services_names(
        make_napari_viewer, tmp_path: Path, monkeypatch) -> None:
    w = dock(make_napari_viewer())
    names = items(w)
    assert names[0] == AUTOMATIC and names[-1] == SERVICE and names[1:-1] == sorted(names[1:-1])
    assert {name_of(MODEL), name_of(FLOAT_MODEL)} <= set(names), "the cards' names, as GET /models lists them"
    assert not w.url.isEnabled()
    w.source.setCurrentText(SERVICE)
    assert w.url.isEnabled()
    (tmp_path / "mine.onnx").write_bytes(b"refused, as the service refuses it")
    (tmp_path / "no-card.onnx").write_bytes(b"")
    (tmp_path / "mine.json").write_bytes(FLOAT_MODEL.with_suffix(".json").read_bytes())
    monkeypatch.setenv("NUCLEI_MODELS", str(tmp_path))
    w = dock(make_napari_viewer())
    assert items(w) == [SERVICE], "no model serves: neither a name nor automatic"
    assert "Refused: mine.onnx: " in w.status.text() and "does not match its card" in w.status.text()
    assert "Refused: no-card.onnx: model card not found" in w.status.text()
