"""The registry over a folder of real model files (copies of the committed INT8 and float32
models under other names): refresh loads what is new or changed and drops what vanished, a
broken file is refused with its reason while the rest serve, two files cannot share a name,
and a request without `model=` goes to the model whose card claims the image's modality."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from nuclei import registry as registry_module
from nuclei.modality import COLOUR_TISSUE
from nuclei.registry import FLOAT32, INT8, REQUESTED, Registry, Routes, UnknownModel, resolve
from tests.conftest import MODEL, VERSION, read_sample
from tests.models import add_float_model, add_model, edit_card, model_folder, replace_file

DEFAULT = json.loads(MODEL.with_suffix(".json").read_text())["name"]  # nuclei-unet.int8
TISSUE = read_sample("he_stained_256x320")[1]  # colour tissue
FLUORESCENCE = read_sample("fluorescence_256x256")[1]  # grey: not colour tissue


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Registry]:
    folder, default = model_folder(tmp_path)
    registry = Registry(folder, default)
    assert registry.refresh()
    return folder, registry


def listed(registry: Registry) -> dict[str, dict]:
    return {e["name"]: e for e in registry.entries()}


def test_refresh_loads_new_and_changed_files_and_drops_vanished_ones(folder) -> None:
    folder, registry = folder
    assert not registry.refresh() and not registry.stale(), "nothing changed: nothing to do"
    [only] = registry.entries()
    expected = {"name": DEFAULT, "file": MODEL.name, "default": True, "status": "loaded", "reason": None,
                "serving": True, "bytes": MODEL.stat().st_size, "version": VERSION, "precision": INT8, "modalities": []}
    assert {k: only[k] for k in expected} == expected
    assert only["metrics"]["dsb_score"] > 0.5 and only["metrics"]["by_modality"][COLOUR_TISSUE]["images"] == 10
    assert only["memory_bytes"] is not None and only["memory_bytes"] >= 0

    second = add_model(folder, "second")
    assert registry.stale() and registry.refresh()
    first = registry.get("second")
    assert first.card.name == "second" and registry.get(DEFAULT) is registry.default

    edit_card(second, version="2.0.0")  # a changed file is loaded again; the old object is left to requests in flight
    assert registry.refresh()
    assert registry.get("second").card.version == "2.0.0" and first.card.version == VERSION
    assert registry.get(DEFAULT) is registry.default, "the other model is not reloaded"

    second.unlink()
    assert registry.refresh()
    with pytest.raises(UnknownModel) as unknown:
        registry.get("second")
    assert unknown.value.available == [DEFAULT] and DEFAULT in str(unknown.value)
    assert list(listed(registry)) == [DEFAULT]


def test_a_broken_file_is_refused_with_its_reason_while_the_others_serve(folder) -> None:
    folder, registry = folder
    second = add_model(folder, "second")
    registry.refresh()
    good = registry.get("second")

    data = second.read_bytes()
    replace_file(second, data[: len(data) // 2])  # half-written, as a copy in progress leaves it
    assert registry.refresh()
    entry = listed(registry)["second"]
    assert entry["status"] == "refused" and entry["serving"] is True
    assert "does not match its card" in entry["reason"] and f"second {VERSION} keeps serving" in entry["reason"]
    assert registry.get("second") is good, "the previous good version serves on"

    replace_file(second, data)  # the copy completes
    assert registry.refresh()
    assert listed(registry)["second"]["status"] == "loaded" and registry.get("second") is not good

    junk = folder / "junk.onnx"  # not ONNX, though its card agrees
    replace_file(junk, b"this is not a protobuf" * 50)
    card = json.loads(second.with_suffix(".json").read_text()) | {
        "name": "junk", "file": junk.name, "sha256": hashlib.sha256(junk.read_bytes()).hexdigest()}
    replace_file(junk.with_suffix(".json"), json.dumps(card).encode())
    (folder / "nocard.onnx").write_bytes(data)
    garbled = add_model(folder, "garbled")
    replace_file(garbled.with_suffix(".json"), b"{not json")
    registry.refresh()
    entries = listed(registry)
    assert "cannot load ONNX model" in entries["junk"]["reason"] and entries["junk"]["serving"] is False
    assert "model card not found" in entries["nocard"]["reason"]
    assert "not valid JSON" in entries["garbled"]["reason"]
    assert {n for n, e in entries.items() if e["status"] == "loaded"} == {DEFAULT, "second"}
    with pytest.raises(UnknownModel, match=r"model 'junk' is refused \(cannot load ONNX model"):
        registry.get("junk")
    assert registry.route(FLUORESCENCE).segmenter is registry.default


def test_two_files_cannot_serve_under_one_name(folder) -> None:
    folder, registry = folder
    first = add_model(folder, "a")
    edit_card(first, name="twin")
    second = add_model(folder, "b")
    edit_card(second, name="twin")
    registry.refresh()
    entries = {e["file"]: e for e in registry.entries()}
    assert entries["a.onnx"]["status"] == "loaded"
    assert entries["b.onnx"]["status"] == "refused" and entries["b.onnx"]["reason"] == (
        "name 'twin' is already served from a.onnx")
    first.unlink()  # the name is free: the waiting file serves
    registry.refresh()
    assert registry.get("twin").model_path.name == "b.onnx"


def test_a_request_goes_to_the_model_that_claims_its_modality(folder, monkeypatch) -> None:
    folder, registry = folder
    asked: list[object] = []
    claimed = registry_module.claimed_modality
    monkeypatch.setattr(registry_module, "claimed_modality", lambda *a: asked.append(a) or claimed(*a))
    assert registry.route(TISSUE) == (registry.default, "default")
    assert asked == [], "no card claims a modality: the image's is not computed"

    add_float_model(folder, "stained-tissue", modalities=[COLOUR_TISSUE])
    add_model(folder, "stained-tissue.int8", modalities=[COLOUR_TISSUE])
    add_model(folder, "a-rival.int8", modalities=[COLOUR_TISSUE])
    registry.refresh()
    chosen, reason = registry.route(TISSUE)
    # of the INT8 claimants (the default's precision) the first by name, then the float32 one
    assert (chosen.card.name, reason) == ("a-rival.int8", f"modality: {COLOUR_TISSUE}")
    assert registry.route(FLUORESCENCE) == (registry.default, "default")
    assert [e["precision"] for e in registry.entries()] == [INT8, INT8, FLOAT32, INT8]

    (folder / "a-rival.int8.onnx").unlink()
    registry.refresh()
    assert registry.route(TISSUE).segmenter.card.name == "stained-tissue.int8"


def test_routes_decide_as_route_does_with_files_for_processes_that_load_their_own(folder) -> None:
    folder, registry = folder
    add_float_model(folder, "stained-tissue", modalities=[COLOUR_TISSUE])
    add_model(folder, "stained-tissue.int8", modalities=[COLOUR_TISSUE])
    registry.refresh()
    routes = pickle.loads(pickle.dumps(registry.routes()))  # shipped to Dask workers
    assert routes.files == [registry.default.model_path, folder / "stained-tissue.int8.onnx",
                            folder / "stained-tissue.onnx"]
    for image in (TISSUE, FLUORESCENCE):
        chosen, reason = registry.route(image)
        assert routes.pick(image) == (chosen.model_path, reason)
    assert routes.pick(TISSUE)[1] == f"modality: {COLOUR_TISSUE}" and routes.by_image
    forced = Routes(folder / "stained-tissue.onnx", requested=True)
    assert forced.pick(FLUORESCENCE) == (folder / "stained-tissue.onnx", REQUESTED) and not forced.by_image


def test_a_float32_default_prefers_the_float32_claimant(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    default = add_float_model(folder, "nuclei-unet")
    add_float_model(folder, "stained-tissue", modalities=[COLOUR_TISSUE])
    add_model(folder, "stained-tissue.int8", modalities=[COLOUR_TISSUE])
    registry = Registry(folder, default)
    registry.refresh()
    assert registry.route(TISSUE).segmenter.card.name == "stained-tissue"


def test_a_missing_default_is_an_error_with_its_reason_and_its_last_version_stays(tmp_path: Path) -> None:
    folder, default = model_folder(tmp_path)
    missing = Registry(folder, folder / "nowhere.onnx")
    missing.refresh()
    with pytest.raises(Exception, match="model card not found"):
        missing.default  # noqa: B018 - the property raises
    registry = Registry(folder, default)
    registry.refresh()
    served = registry.default
    default.unlink()
    assert registry.refresh()
    assert registry.default is served and "model file not found" in listed(registry)[DEFAULT]["reason"]


def test_batch_finds_a_model_by_its_card_name_or_takes_a_path(folder) -> None:
    folder, _ = folder
    stained = add_model(folder, "stained-tissue.int8", modalities=[COLOUR_TISSUE])
    assert resolve("stained-tissue.int8", folder) == stained
    assert resolve(DEFAULT, folder) == folder / MODEL.name
    assert resolve(str(MODEL), folder) == MODEL
    with pytest.raises(UnknownModel) as unknown:
        resolve("nope", folder)
    assert unknown.value.available == [DEFAULT, "stained-tissue.int8"]
