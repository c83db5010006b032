"""The U-Net, as a function that reads like its diagram."""

from __future__ import annotations

import keras
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


def build_unet(filters: tuple[int, ...] = (16, 32, 64, 128, 256)) -> keras.Model:
    """Fully convolutional: any input whose sides divide by 2 ** (len(filters) - 1).

    Output: sigmoid probabilities, one channel per entry of `OUTPUT_CHANNELS`.
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
    outputs = layers.Conv2D(len(OUTPUT_CHANNELS), 1, activation="sigmoid", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="nuclei_unet")


def stride(filters: tuple[int, ...]) -> int:
    return 2 ** (len(filters) - 1)
