"""`nuclei-batch`: many images, or one huge one, segmented on a Dask cluster with the
service's own decoder and `Segmenter` (`nuclei/`), so each image gets the service's labels.

    sources   IN (folder, glob or fsspec URL) → the image files to read
    work      what a worker runs: one Segmenter per worker process, one image → rows + labels
    tables    rows → OUT/images.parquet and OUT/nuclei.parquet, streamed
    cli       the command line: cluster, progress bar, exit status
"""
