"""A served model → a bioimage.io package (spec 0.5), so deepImageJ, ilastik, QuPath and
napari's bioimage.io plugin can run the network and show its probability maps.

The package describes what the network itself computes: the per-image percentile scaling and
clipping of `nuclei.normalize` as the spec's `scale_range` and `clip` preprocessing, the maps
as the output, and the halo the service's tiling drops at inner tile edges. Turning the maps
into nuclei (`nuclei.postprocess`) is not expressible in the spec; the thresholds ride in
`config.nuclei` and docs/bioimageio.md shows the call. Test tensors come from a real sample
through the same Segmenter the service runs, so `bioimageio test` checks the two agree.

bioimageio.spec is imported lazily: `python -m training --help` needs none of it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nuclei.card import ModelCard
from nuclei.imageio import decode_image, encode_png
from nuclei.normalize import HIGH_PERCENTILE, LOW_PERCENTILE, to_rgb
from nuclei.postprocess import instances
from nuclei.segmenter import Segmenter

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "fluorescence_256x256.png"  # dark background: no inversion needed
DOCUMENTATION = ROOT / "docs" / "bioimageio.md"
DSB2018 = {
    "text": "Caicedo et al. (2019) Nucleus segmentation across imaging experiments: the 2018 Data "
            "Science Bowl. Nature Methods 16, 1247–1253",
    "doi": "10.1038/s41592-019-0612-7",
}
# An INT8 model's maps move by whole output quantisation steps (~0.09) wherever onnxruntime's
# INT8 kernels round differently: its fused and its reference kernels differ on 2.1 % of the
# sample's values (VNNI and AVX2 CPUs differ likewise, docs/model.md), so the largest
# tolerance the spec allows is declared: 3 % of values may be off by more than 0.01.
INT8_TOLERANCE = {"relative_tolerance": 0.01, "absolute_tolerance": 0.01, "mismatched_elements_per_million": 30000}
FLOAT_TOLERANCE = {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-3, "mismatched_elements_per_million": 100}


def package_name(model_path: Path) -> str:
    return f"{Path(model_path).stem}.bioimageio.zip"


def opset(model_path: Path) -> int:
    """The default-domain opset the ONNX graph was exported with."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def is_int8(card: ModelCard) -> bool:
    return card.derived is not None or card.name.endswith(".int8")


def halo(card: ModelCard) -> int:
    """Pixels each tile's border is dropped by when tiles overlap (nuclei.tiling)."""
    return card.inference.overlap // 2


def test_tensors(segmenter: Segmenter, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw float32 1xHxWx3 input, 1xHxWxK maps): what the spec's preprocessing takes and the
    network then answers, computed by the service's own normalisation and session."""
    raw = to_rgb(image).astype(np.float32)[None]
    return raw, segmenter.probabilities(image)[None]


def cover(image: np.ndarray, maps: np.ndarray, card: ModelCard) -> np.ndarray:
    """2:1 cover: the sample with its nuclei outlined, beside the foreground map."""
    rgb = np.ascontiguousarray(to_rgb(image)[..., :3]).astype(np.uint8)
    labels = instances(maps[0], card.postprocess)
    edges = cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    outlined = rgb.copy()
    outlined[edges] = (0, 255, 0)
    heat = cv2.applyColorMap((maps[0, ..., 0] * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    return np.concatenate([outlined, heat], axis=1)


def _axes(card: ModelCard, output: bool) -> list[dict[str, Any]]:
    space = {"min": card.input.stride * 9, "step": card.input.stride}  # > 2 halos: a tile keeps a centre
    if output:
        spatial = [{"type": "space", "id": a, "halo": halo(card), "size": {"tensor_id": "image", "axis_id": a}}
                   for a in ("y", "x")]
        channels = [c.split(":")[0].split(" ")[0] for c in card.output.channels.values()]
    else:
        spatial = [{"type": "space", "id": a, "size": space} for a in ("y", "x")]
        channels = ["red", "green", "blue"]
    return [{"type": "batch"}, *spatial, {"type": "channel", "channel_names": channels}]


def _preprocessing() -> list[dict[str, Any]]:
    """nuclei.normalize as the spec writes it (the bright-background inversion has no
    equivalent: docs/bioimageio.md)."""
    return [
        {"id": "scale_range", "kwargs": {"axes": ["y", "x", "channel"], "min_percentile": LOW_PERCENTILE,
                                         "max_percentile": HIGH_PERCENTILE}},
        {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
    ]


def rdf(card: ModelCard, model_file: str, opset_version: int) -> dict[str, Any]:
    """The bioimageio.yaml of one model, files named relative to the package folder."""
    tolerance = INT8_TOLERANCE if is_int8(card) else FLOAT_TOLERANCE
    return {
        "format_version": "0.5.4",
        "type": "model",
        "name": f"DSB2018 nuclei U-Net{' INT8' if is_int8(card) else ''}",
        "description": "Nucleus foreground and boundary probabilities for fluorescence, bright-field "
                       "and H&E images (2018 Data Science Bowl); instances by the nuclei-segmentation "
                       "post-processing (documentation).",
        "version": card.version,
        "authors": [{"name": "nuclei-segmentation developers"}],
        "cite": [DSB2018],
        "license": "MIT",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["nuclei", "instance-segmentation", "unet", "onnx", "fluorescence-light-microscopy",
                 "bright-field-microscopy", "histology", "2d", "dsb2018"],
        "training_data": None,
        "inputs": [{
            "id": "image",
            "description": "RGB (grey: the same in all 3); invert bright-background images (bright-field, H&E) "
                           "first: README.md",
            "axes": _axes(card, output=False),
            "test_tensor": {"source": "test_input.npy"},
            "data": {"type": "float32"},
            "preprocessing": _preprocessing(),
        }],
        "outputs": [{
            "id": "probabilities",
            "description": "per-pixel probabilities of a nucleus (foreground) and of a nucleus rim (boundary)",
            "axes": _axes(card, output=True),
            "test_tensor": {"source": "test_output.npy"},
            "data": {"type": "float32", "range": [0.0, 1.0]},
        }],
        "weights": {"onnx": {"source": model_file, "opset_version": opset_version}},
        "config": {
            "bioimageio": {"reproducibility_tolerance": [tolerance]},
            "nuclei": {"card": card.info, "postprocess": card.to_json()["postprocess"],
                       "scale": card.nucleus_scale.model_dump(), "metrics": card.metrics.get("model", {})},
        },
    }


def package(model_path: Path, out_dir: Path) -> Path:
    """Write OUT_DIR/<model>.bioimageio.zip, validated by bioimageio.spec; its path."""
    from bioimageio.spec import save_bioimageio_package

    model_path = Path(model_path)
    segmenter = Segmenter(model_path)
    card = segmenter.card
    image = decode_image(SAMPLE.read_bytes())
    raw, maps = test_tensors(segmenter, image)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(model_path, folder / model_path.name)
        shutil.copy(DOCUMENTATION, folder / "README.md")
        np.save(folder / "test_input.npy", raw)
        np.save(folder / "test_output.npy", maps)
        (folder / "cover.png").write_bytes(encode_png(np.ascontiguousarray(cover(image, maps, card)[..., ::-1])))
        yaml = folder / "bioimageio.yaml"
        yaml.write_text(json.dumps(rdf(card, model_path.name, opset(model_path)), indent=2))  # JSON is YAML
        return Path(save_bioimageio_package(yaml, output_path=out_dir / package_name(model_path)))


def package_command(models: list[str], out: str) -> int:
    for model in models:
        print(package(Path(model), Path(out)))
    return 0
