"""The ONNX model and its card: the whole pipeline from decoded image to nuclei in one call.

    image → normalize → predict_tiled(session.run) → instances → labels

Training's `evaluate` runs this class too, so the score in the model card is the score of
the service.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.normalize import normalize
from app.postprocess import Thresholds, instances
from app.tiling import predict_tiled


class ModelLoadError(RuntimeError):
    """The model file or its card is missing, corrupt, or do not belong together."""


def card_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class InferenceSettings:
    tile: int = 512
    overlap: int = 128  # margin 64 px each side: 99.9 % of probabilities move by < 0.01
    batch_size: int = 2


class Segmenter:
    """One onnxruntime session, created once, shared by all requests (it is thread-safe)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        optimization: str = "all",
        tile: int | None = None,
        spinning: bool = True,
    ):
        self.model_path = Path(model_path)
        self.card = self._read_card()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle worker threads spin-wait for the next op by default: quickest alone, but
        # they take the cores the HTTP server and its clients need between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load ONNX model {self.model_path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.stride = int(self.card["input"]["stride"])
        self.thresholds = Thresholds(**self.card["postprocess"])
        inference = InferenceSettings(**self.card.get("inference", {}))
        self.inference = replace(inference, tile=tile) if tile else inference

    def _read_card(self) -> dict[str, Any]:
        if not self.model_path.is_file():
            raise ModelLoadError(f"model file not found: {self.model_path}")
        path = card_path(self.model_path)
        try:
            card = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelLoadError(f"model card not found: {path}") from exc
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"model card {path} is not valid JSON: {exc}") from exc
        digest = sha256_file(self.model_path)
        if card.get("sha256") != digest:
            raise ModelLoadError(
                f"{self.model_path} does not match its card {path}: sha256 {digest[:12]}… "
                f"vs {str(card.get('sha256'))[:12]}… (corrupt or replaced file)")
        return card

    @property
    def info(self) -> dict[str, str]:
        return {k: self.card[k] for k in ("name", "version", "sha256")}

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def probabilities(self, image: np.ndarray, tile: int | None = None) -> np.ndarray:
        """Decoded image (any size, grey/RGB/RGBA, any dtype) → HxWx2 probabilities."""
        s = self.inference
        return predict_tiled(
            normalize(image), self.run_batch, tile=tile or s.tile, overlap=s.overlap,
            stride=self.stride, batch_size=s.batch_size)

    def segment(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Decoded image → int32 instance labels (0 background, 1..N) of the same size."""
        thresholds = self.thresholds
        if threshold is not None:
            thresholds = replace(thresholds, foreground=threshold)
        return instances(self.probabilities(image), thresholds)

    def warm_up(self) -> None:
        """One small inference so the first request does not pay for lazy initialisation."""
        self.segment(np.zeros((64, 64), np.uint8))
