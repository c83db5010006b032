"""Where the model runs: one ONNX session and its card, the whole pipeline from a decoded
image to nuclei in one call.

    image → normalize → predict_tiled(session.run) [× views, averaged] → instances → labels

`segment_sized` runs it at the scale of the model's training nuclei (nuclei.scale): the
image is resized only when its nuclei are far from that size.

Training's `evaluate`, the service and every other wing run this class, so the score in the
model card is the score of each of them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nuclei import card as cards
from nuclei.card import CardError
from nuclei.normalize import normalize
from nuclei.postprocess import Thresholds, instances
from nuclei.scale import DiameterError, Sized, check, coarse_diameter, resize, segment_auto, to_size
from nuclei.tiling import predict_tiled
from nuclei.views import averaged

__all__ = ["DiameterError", "Segmenter", "Sized"]

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class Segmenter:
    """One onnxruntime session, created once, shared by all requests (it is thread-safe)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        optimization: str = "all",
        tile_size: int | None = None,
        spinning: bool = True,
    ):
        self.model_path = Path(model_path)
        self.card = cards.load(self.model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle worker threads spin-wait for the next op by default: quickest alone, but
        # they take the cores the HTTP server and its clients need between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CardError(f"cannot load ONNX model {self.model_path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.stride = self.card.input.stride
        self.thresholds = self.card.postprocess
        inference = self.card.inference
        self.inference = inference.model_copy(update={"tile_size": tile_size}) if tile_size else inference

    @property
    def info(self) -> dict[str, str]:
        return self.card.info

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def probabilities(self, image: np.ndarray, tile_size: int | None = None, factor: float = 1.0) -> np.ndarray:
        """Decoded image (any size, grey/RGB/RGBA, any dtype) → HxWxK probabilities; with
        `factor`, of the image resized by it for the network, brought back to its size."""
        return self._maps(normalize(image), factor, tile_size)

    def _maps(self, normalised: np.ndarray, factor: float, tile_size: int | None = None) -> np.ndarray:
        if factor == 1:
            return self._predict(normalised, tile_size)
        return to_size(self._predict(resize(normalised, factor), tile_size), normalised.shape)

    def _predict(self, normalised: np.ndarray, tile_size: int | None = None) -> np.ndarray:
        s = self.inference

        def tiled(view: np.ndarray) -> np.ndarray:
            return predict_tiled(view, self.run_batch, tile_size=tile_size or s.tile_size,
                                 overlap=s.overlap, stride=self.stride, batch_size=s.batch_size)

        return averaged(tiled, normalised, s.views)

    def segment(self, image: np.ndarray, threshold: float | None = None,
                diameter: float | None = None) -> np.ndarray:
        """Decoded image → int32 instance labels (0 background, 1..N) of the same size.

        `threshold` replaces the card's foreground threshold; the seed threshold is never
        below it (see `nuclei.postprocess.Thresholds`), so raising it shrinks nuclei and can
        also drop faint ones. `diameter`: see `segment_sized`."""
        return self.segment_sized(image, threshold, diameter).labels

    def segment_sized(self, image: np.ndarray, threshold: float | None = None,
                      diameter: float | None = None, max_pixels: int | None = None) -> Sized:
        """`segment`, with the median nucleus diameter (px) used and the factor the image was
        resized by for the model. `diameter` None: estimated from a first pass. A diameter
        this model cannot rescale to its training size, or that would enlarge the image past
        `max_pixels`, raises DiameterError."""
        thresholds = self.thresholds
        if threshold is not None:
            thresholds = replace(thresholds, foreground=threshold)
        normalised = normalize(image)
        scale = self.card.nucleus_scale

        def segment_at(factor: float) -> np.ndarray:
            return self._instances(normalised, factor, thresholds)

        if diameter is None:
            coarse = coarse_diameter(normalised)
            return segment_auto(segment_at, normalised, coarse, scale, max_pixels)
        factor = check(diameter, scale, normalised.shape, max_pixels)
        return Sized(segment_at(factor), float(diameter), factor)

    def _instances(self, normalised: np.ndarray, factor: float, thresholds: Thresholds) -> np.ndarray:
        """Nuclei of the image, the network run on it resized by `factor`: its maps come back
        to full size and are post-processed there, areas and distances scaled by 1 / factor."""
        return instances(self._maps(normalised, factor), thresholds.at_scale(1 / factor))

    def warm_up(self) -> None:
        """One small inference so the first request does not pay for lazy initialisation."""
        self.segment(np.zeros((64, 64), np.uint8), diameter=self.card.nucleus_scale.diameter)
