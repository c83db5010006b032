"""Rows → Parquet, written a row group at a time as results arrive, so a million images
never sit in memory together. The schemas are fixed, so an empty table still has columns."""

from __future__ import annotations

from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from nuclei.naming import MODEL_COLUMNS

IMAGES = pa.schema([
    ("path", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("count", pa.int32()),
    ("diameter", pa.float64()), ("quality", pa.float64()), ("flag", pa.string()), ("warning", pa.string()),
    ("status", pa.string()), ("error", pa.string()), *((column, pa.string()) for column in MODEL_COLUMNS),
    ("seconds", pa.float64()), ("output", pa.string()),
])
"""`output`: the stem the image's files were written under (`nuclei.naming`); `quality`, `flag`:
the trust signal (`nuclei.quality`; a slide's: its blocks' mean, weighted by area); `model_name`,
`model_version`, `model_sha256`, `model_route`: the model that answered and why, as the service's
`X-Model-*` headers say it (`nuclei.naming.MODEL_FIELDS`), null for an image that failed."""
BLOCKS = pa.schema([
    ("index", pa.int32()), ("x0", pa.int32()), ("y0", pa.int32()), ("x1", pa.int32()), ("y1", pa.int32()),
    ("count", pa.int32()), ("quality", pa.float64()), ("flag", pa.string()),
])
"""A slide's blocks (their cores, slide pixels): the nuclei each owns and its trust signal,
a map of the slide's doubtful regions."""
NUCLEI = pa.schema([
    ("path", pa.string()), ("id", pa.int32()), ("area", pa.int64()), ("perimeter", pa.float64()),
    ("centroid_x", pa.float64()), ("centroid_y", pa.float64()), ("bbox_x", pa.int32()),
    ("bbox_y", pa.int32()), ("bbox_width", pa.int32()), ("bbox_height", pa.int32()),
    ("equivalent_diameter", pa.float64()), ("eccentricity", pa.float64()), ("solidity", pa.float64()),
    ("mean_intensity", pa.float64()), ("integrated_intensity", pa.float64()), ("touches_border", pa.bool_()),
])


class TableWriter:
    """One Parquet file at a URL, appended to in row groups."""

    def __init__(self, url: str, schema: pa.Schema) -> None:
        self.schema = schema
        self._file = fsspec.open(url, "wb", auto_mkdir=True).open()
        self._writer = pq.ParquetWriter(self._file, schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()
        self._file.close()
