"""The segmentation core, shared by the service, training and every other wing.

    imageio      bytes → image: decode (header-first size checks), encode PNG
    planes       which plane of a stack is read: channels and pages by the file's axes
    preview      the plane that was segmented, as an 8-bit image a browser can draw
    normalize    the one input normalisation
    tiling       pad to the stride, overlapping tiles, stitch, crop back
    segmenter    where the model runs: ONNX session + card, image → labels in one call
    scale        any nucleus size: resize to the training diameter (given or estimated) and back
    postprocess  probabilities → instances (and the training targets, its inverse)
    regions      where a nucleus gets its area, centroid and box: once, for every format
    rle          where a nucleus becomes run-length encoding, a CSV row, a JSON record
    geojson      where a nucleus becomes a polygon (QuPath detections)
    labelio      where labels are read back: label images, Kaggle masks, QuPath GeoJSON
    measure      one row of measurements per nucleus
    encode       labels → the body of each output format
    bundle       several formats of one segmentation in one zip
    naming       the one rule for output names; hidden and system files skipped
    errors       input errors → HTTP status, and the one wording of an error column
    pipeline     bytes → encoded nuclei in one call
    quality      how far to trust a result: the model's agreement with itself, flipped
    blocks       a large image cut into blocks; which block owns which nucleus (its centre)
    stitch       the blocks' owned nuclei into label tiles with image-wide ids
    big          a large image block by block through the Segmenter, without Dask
    card         the typed model card: load (sha256 checked), save
    registry     every model of a folder by its card's name: reload on change, routing by modality
    cpu          the CPU's flags: which INT8 kernels run, whether answers are the card's

No web framework and no training framework here: imports point down into this package only.
"""
