"""Our label outputs open as Labels layers through the plugin's reader, and the manifest is
what npe2 accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import npe2
import numpy as np
import tifffile

from nuclei.encode import labels_png
from nuclei.segmenter import Segmenter
from tests.conftest import MODEL, read_sample

PLUGIN = "nuclei-segmentation"


def labels() -> np.ndarray:
    return Segmenter(MODEL).segment(read_sample("fluorescence_256x256")[1])


def test_npe2_validates_the_manifest() -> None:
    npe2_cli = Path(sys.executable).parent / "npe2"
    assert npe2_cli.is_file(), "npe2 missing: pip install -e '.[napari]'"
    done = subprocess.run([str(npe2_cli), "validate", PLUGIN, "--imports"], capture_output=True, text=True)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr


def test_labels_png_and_ome_tiff_open_as_labels(make_napari_viewer, tmp_path: Path) -> None:
    expected = labels()
    png = tmp_path / "well A01.labels.png"
    png.write_bytes(labels_png(expected))
    ome = tmp_path / "slide.labels.ome.tif"
    tifffile.imwrite(ome, expected.astype(np.uint32), ome=True, tile=(128, 128), compression="zlib")
    viewer = make_napari_viewer()  # napari discovers the plugins
    readers = {r.plugin_name for r in npe2.PluginManager.instance().iter_compatible_readers([str(png)])}
    assert PLUGIN in readers
    for path, name in ((png, "well A01.labels"), (ome, "slide.labels")):
        [layer] = viewer.open(path, plugin=PLUGIN)
        assert type(layer).__name__ == "Labels" and layer.name == name
        np.testing.assert_array_equal(layer.data, expected)
    assert int(expected.max()) > 10


def test_other_files_are_left_to_other_readers(tmp_path: Path) -> None:
    from napari_nuclei.reader import get_reader

    assert get_reader(str(tmp_path / "image.png")) is None
    assert get_reader(str(tmp_path / "image.ome.tif")) is None
    assert get_reader(str(tmp_path / "x.labels.png")) is not None
