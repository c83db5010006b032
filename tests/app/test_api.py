"""The HTTP contract, through the real app and the committed model, on real images."""

import io

import cv2
import numpy as np
import pytest
import tifffile

from nuclei.rle import decode
from tests.conftest import SAMPLE_NAMES, make_client, png_bytes, post, read_png, read_sample


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_all_formats_agree_on_a_real_image(client, name):
    data, image, _ = read_sample(name)
    height, width = image.shape[:2]

    mask = read_png(post(client, data).content)
    assert mask.shape == (height, width) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}

    labels_resp = post(client, data, format="labels")
    labels = read_png(labels_resp.content)
    assert labels_resp.headers["content-type"] == "image/png"
    assert labels.dtype == np.uint16 and labels.shape == (height, width)
    assert np.array_equal(labels > 0, mask > 0)

    doc = post(client, data, format="rle").json()
    assert (doc["width"], doc["height"]) == (width, height)
    assert doc["count"] == len(doc["instances"]) == labels.max() > 0
    assert np.array_equal(decode(doc["mask_rle"], height, width), mask > 0)
    union = np.zeros((height, width), np.int32)
    for inst in doc["instances"]:
        one = decode(inst["rle"], height, width)
        assert inst["area"] == one.sum()
        assert np.array_equal(one, labels == inst["id"])
        union += one
    assert union.max() == 1  # instances never overlap
    assert np.array_equal(union > 0, mask > 0)
    served = {m["name"]: m for m in client.get("/models").json()["models"]}
    routed = served["stained-tissue.int8" if name.startswith("he_") else "nuclei-unet.int8"]
    assert doc["model"] == {k: routed[k] for k in ("name", "version", "sha256")}  # the model the route chose

    csv = post(client, data, name=f"folder/{name}.png", format="csv")
    assert csv.headers["content-type"].startswith("text/csv")
    rows = csv.text.splitlines()
    assert rows[0] == "ImageId,EncodedPixels"
    assert rows[1:] == [f"{name},{inst['rle']}" for inst in doc["instances"]]


@pytest.mark.parametrize(("height", "width"), [
    (1, 1), (5, 3),
    pytest.param(1040, 1388, marks=pytest.mark.slow), pytest.param(2048, 2048, marks=pytest.mark.slow),
])
def test_output_keeps_input_size(client, height, width):
    _, image, _ = read_sample("fluorescence_520x696")
    reps = (-(-height // 520), -(-width // 696), 1)
    big = np.tile(image[..., :3], reps)[:height, :width]
    mask = read_png(post(client, png_bytes(big)).content)
    assert mask.shape == (height, width)


def test_large_image_finds_nuclei_everywhere(client):
    """Tiles are stitched, not dropped: a 2×2 mosaic finds ~4× the nuclei of one copy."""
    data, image, _ = read_sample("fluorescence_256x256")
    one = post(client, data, format="rle").json()["count"]
    mosaic = np.tile(image, (2, 2, 1))
    four = post(client, png_bytes(cv2.cvtColor(mosaic, cv2.COLOR_RGBA2BGRA)), format="rle").json()["count"]
    assert 3.6 * one <= four <= 4.4 * one


def test_16_bit_tiff_and_jpeg_and_bmp(client):
    _, image, _ = read_sample("fluorescence_256x256")
    grey = image[..., 0]
    reference = read_png(post(client, png_bytes(grey)).content)
    buf = io.BytesIO()
    tifffile.imwrite(buf, grey.astype(np.uint16) * 257)
    as_tiff = read_png(post(client, buf.getvalue(), name="x.tif").content)
    assert (as_tiff == reference).mean() > 0.999  # same image at another bit depth
    for ext in (".jpg", ".bmp"):
        _ok, enc = cv2.imencode(ext, grey)
        mask = read_png(post(client, enc.tobytes(), name=f"x{ext}").content)
        assert mask.shape == grey.shape and (mask == reference).mean() > 0.98


def test_threshold_overrides_card(client):
    data, _, _ = read_sample("fluorescence_520x696")
    loose = (read_png(post(client, data, threshold=0.2).content) > 0).sum()
    strict = (read_png(post(client, data, threshold=0.9).content) > 0).sum()
    assert loose > strict > 0


@pytest.mark.parametrize(("params", "status"), [
    ({"threshold": 1.5}, 422), ({"threshold": -0.1}, 422), ({"threshold": "nan"}, 422),
    ({"threshold": "inf"}, 422), ({"format": "jpeg"}, 422),
])
def test_bad_parameters_are_422(client, params, status):
    data, _, _ = read_sample("fluorescence_256x256")
    r = post(client, data, **params)
    assert r.status_code == status
    assert isinstance(r.json()["detail"], str)


def test_health_ready_model_metrics_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    card = client.get("/model").json()
    assert card["sha256"] and card["input"]["normalization"] and card["postprocess"]
    assert card["derived"]["settings"]["reduce_range"] is True  # 7-bit weights: one answer on every x86 CPU
    assert card["runtime"]["answers"].startswith("as on the card") and card["runtime"]["int8_kernels"]
    post(client, read_sample("fluorescence_256x256")[0])
    metrics = client.get("/metrics").text
    for name in ("http_requests_total", "http_request_duration_seconds_bucket",
                 "images_processed_total", "pixels_processed_total", "http_requests_in_flight"):
        assert name in metrics
    assert 'route="/segment"' in metrics
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/segment"]["post"]["responses"]["200"]["content"]
    assert {"image/png", "application/json", "text/csv"} <= set(content)


def test_ready_is_503_before_model_loads():
    client = make_client()  # not entered: the lifespan has not loaded the model
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("spinning", "entry"), [(True, "1"), (False, "0")])
def test_spinning_setting_reaches_the_session(spinning, entry):
    with make_client(intra_op_spinning=spinning) as client:
        options = client.app.state.registry.default.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
        data = read_sample(SAMPLE_NAMES[0])[0]
        response = client.post("/segment", files={"file": ("a.png", data)})
        assert response.status_code == 200 and int(response.headers["x-nuclei-count"]) > 0
