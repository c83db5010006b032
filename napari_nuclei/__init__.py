"""The napari plugin: segment an image layer into a Labels layer whose features table holds
each nucleus' measurements, with a local model or a running service; open our label images.

    napari.yaml  the npe2 manifest (entry point `napari.manifest` in pyproject.toml)
    models       the model picker: `automatic` (the service's routing), then the models of models/ or
                 $NUCLEI_MODELS by their names (nuclei.registry), each loaded once
    run          image → labels + measurements, locally through `nuclei` or through `client`
    widget       the dock widget: layer, model or URL, diameter, threshold; runs off the UI thread
    reader       `<stem>.labels.png` and `<stem>.labels.ome.tif` → a Labels layer

A wing like `client/` and `batch/`: it stands on `nuclei/` (and `client/`), never on `app/`.
"""
