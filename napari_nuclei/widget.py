"""The dock widget: pick an image layer and a model (`automatic`: the model the service would
route the image to; a model by the name the service gives it; or a service URL), set the
diameter and the threshold, and segment. The model runs on a napari worker thread, so the
viewer keeps drawing and answering while it runs; the result comes back on the UI thread as a
Labels layer named `<image>.labels`, with the measurements as its features table (napari
colours and filters by them), and the status line says which model answered and why.
Segmenting the same image again replaces that layer, so thresholds are quick to compare.
"""

from __future__ import annotations

import napari
import numpy as np
from napari.layers import Image
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from napari_nuclei import models
from napari_nuclei.run import Nuclei, segment

SERVICE = "service URL"


def plane(layer: Image, viewer: napari.Viewer) -> np.ndarray:
    """The 2-D image (grey or colour) the viewer shows of `layer`: its current plane of a stack."""
    data = layer.data[0] if layer.multiscale else layer.data
    extra = layer.ndim - 2
    if extra:
        step = viewer.dims.current_step[-layer.ndim:][:extra]
        data = data[tuple(int(s) for s in step)]
    return np.asarray(data)


class SegmentWidget(QWidget):
    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: FunctionWorker | None = None
        self.image = QComboBox()
        self.source = QComboBox()
        found = models.registry()
        for name in models.names(found):
            self.source.addItem(name, name)
        self.source.addItem(SERVICE, None)
        self.url = QLineEdit("http://127.0.0.1:8000")
        self.diameter = _spin(0, 1000, 1, "automatic", " px")
        self.threshold = _spin(0, 0.99, 0.05, "the model's", "")
        self.button = QPushButton("Segment")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: a run has no steps to count
        self.progress.setVisible(False)
        self.status = QLabel("\n".join(f"Refused: {why}" for why in models.refused(found)))
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        for label, field in (("image", self.image), ("model", self.source), ("URL", self.url),
                             ("diameter", self.diameter), ("threshold", self.threshold)):
            form.addRow(label, field)
        form.addRow(self.button)
        form.addRow(self.progress)
        form.addRow(self.status)
        self.source.currentIndexChanged.connect(self._show_url)
        self.button.clicked.connect(self.segment)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._list_images)
        self._list_images()
        self._show_url()

    def _list_images(self, *_: object) -> None:
        chosen = self.image.currentText()
        self.image.clear()
        self.image.addItems([layer.name for layer in self.viewer.layers if isinstance(layer, Image)])
        if chosen:
            self.image.setCurrentText(chosen)

    def _show_url(self, *_: object) -> None:
        self.url.setEnabled(self.source.currentData() is None)

    def segment(self) -> FunctionWorker | None:
        """Start a run on the chosen layer; the worker, or None when there is nothing to run."""
        name = self.image.currentText()
        if not name:
            self.status.setText("Open an image first.")
            return None
        layer = self.viewer.layers[name]
        model = self.source.currentData()
        options = {
            "model": model,
            "url": None if model else self.url.text().strip(),
            "name": name,
            "diameter": self.diameter.value() or None,
            "threshold": self.threshold.value() or None,
        }
        self.worker = create_worker(segment, plane(layer, self.viewer), **options, _start_thread=False)
        self.worker.returned.connect(lambda nuclei: self._show(layer, nuclei))
        self.worker.errored.connect(lambda exc: self.status.setText(f"Failed: {exc}"))
        self.worker.finished.connect(self._done)
        self.button.setEnabled(False)
        self.progress.setVisible(True)
        self.status.setText(f"Segmenting {name}…")
        self.worker.start()
        return self.worker

    def _done(self) -> None:
        self.button.setEnabled(True)
        self.progress.setVisible(False)

    def _show(self, image: Image, nuclei: Nuclei) -> None:
        name = f"{image.name}.labels"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = nuclei.labels
            self.viewer.layers[name].features = nuclei.features
        else:
            self.viewer.add_labels(nuclei.labels, name=name, features=nuclei.features,
                                   scale=image.scale[-2:], translate=image.translate[-2:])
        size = f" · diameter {nuclei.diameter:.1f} px" if nuclei.diameter else ""
        why = f" ({nuclei.route})" if nuclei.route else ""
        self.status.setText(f"{nuclei.count} nuclei · {nuclei.model['name']} {nuclei.model['version']}{why}{size}")


def _spin(low: float, high: float, step: float, at_zero: str, suffix: str) -> QDoubleSpinBox:
    """A number field whose 0 reads as `at_zero`: leave it there for the default."""
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setSpecialValueText(at_zero)
    box.setSuffix(suffix)
    return box
