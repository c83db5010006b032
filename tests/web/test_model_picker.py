"""The page's model picker in Chromium, against a server whose model folder holds a
stained-tissue specialist (a copy of the default model whose card claims colour tissue):
"automatic" first, then the models of GET /models; automatic lets the server route, a name
is sent as `model=`, the page says which model answered and why, and a model added while
the server runs is listed when the page loads again."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from nuclei.modality import COLOUR_TISSUE
from tests.models import add_model
from tests.web.conftest import serve, web_app

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TISSUE = SAMPLES / "he_stained_256x320.png"
DEFAULT, STAINED = "nuclei-unet.int8", "stained-tissue.int8"


def segment_on_the_page(page, image: Path) -> None:
    clear = page.get_by_role("button", name="Clear")  # shown once a first image is in the queue
    if clear.is_visible():
        clear.click()
    page.get_by_test_id("files").set_input_files(image)
    expect(page.locator("[data-testid=row]").first).to_have_attribute("data-status", "done")


def test_the_model_picker_lists_the_models_and_the_page_says_which_answered(
        page, web_segmenter, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    add_model(folder, STAINED, version="2.0.0", modalities=[COLOUR_TISSUE])
    sent: list[str] = []
    page.on("request", lambda r: "/segment" in r.url and sent.append(r.url))
    with serve(web_app(web_segmenter, models_dir=folder, queue_depth=2, api_key=None)) as url:
        page.goto(url + "/")
        options = page.locator("[data-testid=model-choice] option")
        expect(options).to_have_count(3)
        assert [o.get_attribute("value") for o in options.all()] == ["", DEFAULT, STAINED]
        assert options.first.text_content() == "automatic"
        assert options.nth(2).text_content() == f"{STAINED} (for {COLOUR_TISSUE})"

        segment_on_the_page(page, TISSUE)  # automatic: the server routes the stained image to the specialist
        expect(page.get_by_test_id("result-model")).to_have_text(f"model {STAINED} (modality: {COLOUR_TISSUE})")
        expect(page.locator("#model")).to_contain_text(f"Model: {STAINED} 2.0.0")
        assert "model=" not in sent[-1]

        page.get_by_test_id("model-choice").select_option(DEFAULT)
        segment_on_the_page(page, TISSUE)
        expect(page.get_by_test_id("result-model")).to_have_text(f"model {DEFAULT} (requested)")
        assert f"model={DEFAULT}" in sent[-1]

        add_model(folder, "new")  # added while serving: listed when the page loads again
        page.reload()
        expect(options).to_have_count(4)
        assert "new" in [o.get_attribute("value") for o in options.all()]
    assert page.outside == []
