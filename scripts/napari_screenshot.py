"""docs/images/napari-plugin.png: the plugin in use, as docs/for-biologists.md shows it.

    xvfb-run -a .venv/bin/python -m scripts.napari_screenshot   (or on a desktop, without xvfb-run)

An H&E sample segmented with the served model through the dock widget, and napari's own
features table docked beside it, listing the measurements of every nucleus.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from napari._qt.dialogs.qt_notification import NapariQtNotification
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

from nuclei.imageio import decode_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = "he_stained_256x320"
OUT = ROOT / "docs" / "images" / "napari-plugin.png"


def main() -> int:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    viewer.add_image(decode_image((ROOT / "samples" / f"{SAMPLE}.png").read_bytes()), name=SAMPLE, rgb=True)
    dock, widget = viewer.window.add_plugin_dock_widget("nuclei-segmentation", "Segment nuclei")
    widget.segment()
    while not widget.button.isEnabled() or f"{SAMPLE}.labels" not in viewer.layers:
        QApplication.processEvents()
    labels = viewer.layers[f"{SAMPLE}.labels"]
    labels.contour = 2
    viewer.layers.selection.active = labels
    table, _ = viewer.window.add_plugin_dock_widget("napari", "Features table widget", tabify=False)
    window = viewer.window._qt_window
    window.resizeDocks([dock, table], [260, 640], Qt.Orientation.Vertical)
    window.resizeDocks([dock], [520], Qt.Orientation.Horizontal)
    for toast in window.findChildren(NapariQtNotification):  # the PyQt5 deprecation notice
        toast.close()
    for _ in range(20):  # let the docks settle before fitting the image to the canvas
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(OUT, widget.status.text())
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
