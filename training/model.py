"""The U-Net, as a function that reads like its diagram."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from nuclei.normalize import CHANNELS
from nuclei.postprocess import OUTPUT_CHANNELS


def conv_block(x, filters: int):
    """Two 3×3 convolutions, each followed by batch norm and ReLU."""
    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return x


def build_unet(filters: tuple[int, ...] = (16, 32, 64, 128, 256), outputs: int = len(OUTPUT_CHANNELS)) -> keras.Model:
    """Fully convolutional: any input whose sides divide by 2 ** (len(filters) - 1).

    Output: sigmoid probabilities, one channel per entry of `OUTPUT_CHANNELS` (earlier
    models had fewer: `outputs` rebuilds them).
    """
    inputs = keras.Input((None, None, CHANNELS), name="image")
    x = inputs
    skips = []
    for f in filters[:-1]:  # contracting path
        x = conv_block(x, f)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = conv_block(x, filters[-1])  # bottleneck
    for f, skip in zip(reversed(filters[:-1]), reversed(skips), strict=True):  # expanding path
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skip])
        x = conv_block(x, f)
    # float32 output even under a mixed-precision policy: the sigmoid and the loss need it
    probabilities = layers.Conv2D(outputs, 1, activation="sigmoid", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, probabilities, name="nuclei_unet")


def warm_start(model: keras.Model, weights: str, filters: tuple[int, ...]) -> None:
    """Load weights saved from a model with the same body and maybe fewer output channels
    (1.3.0 had two): the body is copied as is, the known output channels too, and each new
    channel starts as a copy of the last old one (boundary, the nearest kin of contact)."""
    try:
        model.load_weights(weights)
        return
    except ValueError:
        pass
    old_outputs = None
    for n in range(1, len(OUTPUT_CHANNELS)):
        try:
            old = build_unet(filters, outputs=n)
            old.load_weights(weights)
            old_outputs = n
            break
        except ValueError:
            continue
    if old_outputs is None:
        raise ValueError(f"{weights} does not fit this U-Net ({filters}) with 1..{len(OUTPUT_CHANNELS)} outputs")
    for new_layer, old_layer in zip(model.layers, old.layers, strict=True):
        values = old_layer.get_weights()
        if new_layer.name == "probabilities":
            kernel, bias = values
            extra = model.output_shape[-1] - old_outputs
            values = [np.concatenate([kernel] + [kernel[..., -1:]] * extra, axis=-1),
                      np.concatenate([bias] + [bias[-1:]] * extra)]
        new_layer.set_weights(values)


def stride(filters: tuple[int, ...]) -> int:
    return 2 ** (len(filters) - 1)
