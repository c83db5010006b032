"""The service serves every model of its model folder (copies of the committed INT8 model
under other names, so each card's sha256 still matches): GET /models, routing by modality,
`model=`, a file added or replaced while serving, a broken one refused while the rest serve,
and a request in flight that finishes on the model it started with."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import EXPOSED_HEADERS, create_app
from app.schemas import ModelList, unknown_model_detail
from bench.server import server_env
from nuclei.modality import COLOUR_TISSUE
from tests.conftest import GOOD, MODEL, ROOT, VERSION, post, read_sample
from tests.models import add_model, edit_card, model_folder, replace_file

DEFAULT = "nuclei-unet.int8"
STAINED = "stained-tissue.int8"
TISSUE = read_sample("he_stained_256x320")[0]
FLUORESCENCE = read_sample("fluorescence_256x256")[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return model_folder(tmp_path)[0]


@pytest.fixture
def client(folder: Path) -> Iterator[TestClient]:
    """Two inference threads: a request held on one leaves the other to the next request."""
    settings = Settings(model_path=folder / MODEL.name, models_dir=folder, inference_workers=2, queue_depth=4)
    with TestClient(create_app(settings)) as c:
        yield c


def model_of(response) -> tuple[str, str, str]:
    assert response.status_code == 200, response.text
    return response.headers["X-Model-Name"], response.headers["X-Model-Version"], response.headers["X-Model-Route"]


def listing(client: TestClient) -> dict[str, dict]:
    response = client.get("/models")
    assert response.status_code == 200, response.text
    return {m["name"]: m for m in ModelList.model_validate(response.json()).model_dump()["models"]}


def test_two_models_served_and_an_image_routed_by_its_modality(folder: Path) -> None:
    add_model(folder, STAINED, version="2.0.0", modalities=[COLOUR_TISSUE])
    with TestClient(create_app(Settings(model_path=folder / MODEL.name, models_dir=folder))) as client:
        models = listing(client)
        assert client.get("/models").json()["default"] == DEFAULT
        assert sorted(models) == [DEFAULT, STAINED]
        assert models[STAINED]["modalities"] == [COLOUR_TISSUE] and not models[STAINED]["default"]
        assert models[DEFAULT]["default"] and models[DEFAULT]["precision"] == "int8"
        for m in models.values():
            assert m["status"] == "loaded" and m["bytes"] == MODEL.stat().st_size and m["memory_bytes"] is not None

        assert model_of(post(client, TISSUE)) == (STAINED, "2.0.0", f"modality: {COLOUR_TISSUE}")
        assert model_of(post(client, FLUORESCENCE)) == (DEFAULT, VERSION, "default")
        assert model_of(post(client, TISSUE, model=DEFAULT)) == (DEFAULT, VERSION, "requested")
        body = post(client, TISSUE, format="rle").json()
        assert body["model"]["name"] == STAINED, "the body names the model the headers name"
        assert client.get("/model").json()["name"] == DEFAULT, "/model stays the default's card"
        metrics = client.get("/metrics").text
        assert f'images_processed_total{{model="{STAINED}"}} 2.0' in metrics
        assert f'images_processed_total{{model="{DEFAULT}"}} 2.0' in metrics
    assert "X-Model-Route" in EXPOSED_HEADERS


def test_an_unknown_model_is_422_listing_the_served_ones_as_documented(client: TestClient) -> None:
    response = post(client, GOOD, model="stained")
    assert response.status_code == 422
    assert response.json()["detail"] == unknown_model_detail("stained", [DEFAULT])
    assert response.json()["detail"] == "model: unknown model 'stained'; available: nuclei-unet.int8 (GET /models)"
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/segment"]["post"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "model"]
    assert parameter["in"] == "query" and "GET /models" in parameter["description"]
    examples = operation["responses"]["422"]["content"]["application/json"]["examples"]
    assert examples["model"]["value"]["detail"] == response.json()["detail"]
    models = spec["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert models["schema"] == {"$ref": "#/components/schemas/ModelList"}
    ModelList.model_validate(models["examples"]["models"]["value"])


def test_a_model_file_added_while_serving_is_used_without_a_restart(client: TestClient, folder: Path) -> None:
    assert sorted(listing(client)) == [DEFAULT]
    add_model(folder, "new")
    assert model_of(post(client, GOOD, model="new")) == ("new", VERSION, "requested")
    add_model(folder, STAINED, modalities=[COLOUR_TISSUE])  # a card that claims a modality: routed to at once
    assert model_of(post(client, TISSUE))[0] == STAINED
    assert sorted(listing(client)) == sorted([DEFAULT, "new", STAINED])


def test_a_broken_file_is_refused_while_serving_goes_on(client: TestClient, folder: Path, caplog) -> None:
    stained = add_model(folder, STAINED, modalities=[COLOUR_TISSUE])
    assert model_of(post(client, TISSUE))[0] == STAINED
    caplog.set_level(logging.INFO, logger="nuclei.registry")

    replace_file(folder / "broken.onnx", b"half a model")  # no card beside it
    data = stained.read_bytes()
    replace_file(stained, data[: len(data) // 2])  # a copy over the specialist, half done
    models = listing(client)
    assert models["broken"]["status"] == "refused" and not models["broken"]["serving"]
    assert models["broken"]["reason"].startswith("model card not found")
    assert models[STAINED]["status"] == "refused" and models[STAINED]["serving"]
    assert "does not match its card" in models[STAINED]["reason"]
    assert models[STAINED]["reason"].endswith(f"{STAINED} {VERSION} keeps serving")
    refusals = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refusals) == 2, "one log line per refused file"
    assert model_of(post(client, TISSUE))[0] == STAINED, "the previous version of the specialist serves on"
    assert model_of(post(client, FLUORESCENCE))[0] == DEFAULT
    refused = post(client, GOOD, model="broken")
    assert refused.status_code == 422 and "model 'broken' is refused (model card not found" in refused.json()["detail"]

    replace_file(stained, data)
    assert listing(client)[STAINED]["status"] == "loaded"
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2, "nothing refused twice"


def test_a_request_in_flight_finishes_on_the_model_it_started_with(
        client: TestClient, folder: Path, monkeypatch) -> None:
    swapped = add_model(folder, "swap", version="1.0.0")
    assert model_of(post(client, GOOD, model="swap"))[1] == "1.0.0"
    old = client.app.state.registry.get("swap")
    started, release = threading.Event(), threading.Event()
    segment = old.segment_sized

    def held(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return segment(*args, **kwargs)

    monkeypatch.setattr(old, "segment_sized", held)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(post, client, GOOD, model="swap")
        assert started.wait(30)
        edit_card(swapped, version="2.0.0")  # the file is replaced while the request runs on the old model
        assert listing(client)["swap"]["version"] == "2.0.0"
        assert model_of(post(client, GOOD, model="swap"))[1] == "2.0.0", "a new request gets the new model"
        assert not in_flight.done()
        release.set()
        assert model_of(in_flight.result(30)) == ("swap", "1.0.0", "requested")


def test_a_broken_model_never_stops_start_up_but_a_missing_folder_does(folder: Path, tmp_path: Path) -> None:
    replace_file(folder / "broken.onnx", b"not a model")
    with TestClient(create_app(Settings(model_path=folder / MODEL.name, models_dir=folder))) as client:
        assert listing(client)["broken"]["status"] == "refused"
        assert model_of(post(client, GOOD))[0] == DEFAULT
    env = server_env({"model_path": folder / MODEL.name, "models_dir": tmp_path / "nowhere"})
    done = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr.strip()) == (
        1, f"error: models folder not found: {tmp_path / 'nowhere'} (MODELS_DIR)")
