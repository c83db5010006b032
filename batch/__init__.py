"""`nuclei-batch`: many images, or one huge one, segmented on a Dask cluster with the
service's own decoder and `Segmenter` (`nuclei/`), so each image gets the service's labels.

    sources   IN (folder, glob or fsspec URL) → the image files to read
    folder    the folder job: chunks on the cluster, checkpoints, resume
    work      what a worker runs: one Segmenter per worker process, one image → rows + labels
    tables    rows → OUT/images.parquet and OUT/nuclei.parquet, streamed
    cli       the command line: cluster, progress bar, exit status

One huge image (a slide, a mosaic, a zarr array) goes block by block instead:

    slide       the slide job: a statistics pass, the blocks in parallel, the outputs
    slideio     lazy reads of TIFF/BigTIFF/OME-TIFF regions and zarr arrays
    blocks      what a worker runs for one block: the big-image core of `nuclei.big`
                (grid, ownership, stitching: nuclei.blocks, nuclei.stitch), then measurements
    synthetic   slides made of the real samples, for the tests and `python -m bench.throughput --slide`

Both jobs write through `outputs` (`.partial` files and an INCOMPLETE marker until done);
a folder job resumes (`folder`).
"""
