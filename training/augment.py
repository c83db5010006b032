"""Random crops of normalised images with their targets, varied the way DSB2018 varies.

Fluorescence dominates the set (~84%), so images that were colour or bright-field before
normalisation are drawn more often, grey crops are sometimes tinted or inverted, and colour
crops get another stain (hue and saturation shifted, channels swapped), since a lab's H&E
rarely matches the few stained slides in the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nuclei.postprocess import targets
from nuclei.scale import DEFAULT_SCALE, median_diameter, resize
from nuclei.tiling import pad_to_multiple

TRAINING_DIAMETER = DEFAULT_SCALE.diameter  # px: the median DSB2018 nucleus (`training diameters`)


@dataclass(frozen=True)
class AugmentConfig:
    crop: int = 256
    scale_range: tuple[float, float] = (0.6, 1.6)
    rare_weight: float = 3.0  # how much more often colour/bright-field images are drawn
    invert_p: float = 0.1
    tint_p: float = 0.3
    noise_p: float = 0.2
    blur_p: float = 0.1
    stain_p: float = 0.5  # colour crops only: hue/saturation jitter
    shuffle_p: float = 0.2  # colour crops only: RGB channels permuted
    to_diameter: float = 0.0  # > 0: each image first resized so its median nucleus has this diameter
    band: tuple[float, float] = (0.0, 0.0)  # or, when set: only images whose median lies outside, to its edge


# Later, low-learning-rate stages move closer to the unaugmented images they are scored on.
# "native" never resamples: a nucleus rim then lies on the pixel grid exactly as it does at
# inference, instead of being smeared by interpolation (train at the test resolution).
_LIGHT_INTENSITY = {"invert_p": 0.05, "tint_p": 0.15, "noise_p": 0.1, "blur_p": 0.05}
AUGMENT_PRESETS = {
    "full": AugmentConfig(),
    "light": AugmentConfig(scale_range=(0.8, 1.25), **_LIGHT_INTENSITY),
    "native": AugmentConfig(scale_range=(1.0, 1.0), **_LIGHT_INTENSITY),
    # One scale (Cellpose's recipe): every image brought to the training diameter, then jittered
    # ±25 %; a 128² crop then holds as many nuclei as a native 256² one, at a quarter of the cost.
    "scaled": AugmentConfig(crop=128, scale_range=(0.8, 1.25), to_diameter=TRAINING_DIAMETER),
    # A band of sizes: images whose median nucleus lies in it stay at their own pixels (outlines
    # as sharp as at inference, which resizes only images outside the card's range); the rest
    # are brought to its nearest edge, so the network spends nothing on sizes it never serves.
    "banded": AugmentConfig(crop=160, scale_range=(0.8, 1.25), band=(12.0, 29.0), **_LIGHT_INTENSITY),
    # The band reaching 40 px: large grey nuclei (which "banded" shrinks, and loses outlines on)
    # keep their own pixels; 192² crops still hold several of them.
    "wide": AugmentConfig(crop=192, scale_range=(0.8, 1.25), band=(12.0, 40.0), **_LIGHT_INTENSITY),
}


def is_rare_style(raw: np.ndarray) -> bool:
    """Colour (H&E) or bright background (bright-field) images: the minority styles."""
    rgb = raw[..., :3] if raw.ndim == 3 else raw[..., None]
    colour = rgb.shape[-1] == 3 and float(np.abs(rgb[..., 0].astype(np.int32) - rgb[..., 2]).mean()) > 2
    bright = float(np.median(rgb)) > float(np.mean(rgb)) and float(np.median(rgb)) > 100
    return colour or bright


def at_training_scale(image: np.ndarray, labels: np.ndarray, diameter: float,
                      band: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The image and its labels resized so that their median nucleus is `diameter` px across,
    or, given a `band`, so that it lies within it (unchanged when it already does)."""
    median = median_diameter(labels)
    if median and band:
        diameter = float(np.clip(median, *band))
    if not median or abs(diameter / median - 1) < 0.02:
        return image, labels
    factor = diameter / median
    resized = resize(image, factor)
    size = resized.shape[1::-1]
    return resized, cv2.resize(labels.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)


def random_crop(
    image: np.ndarray, labels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A crop×crop window at a random scale, position, flip and 90° rotation."""
    scale = float(np.exp(rng.uniform(*np.log(cfg.scale_range))))
    # Zooming out never goes past the whole image: mirrored padding is no real data.
    window = min(max(8, round(cfg.crop / scale)), max(cfg.crop, min(image.shape[:2])))
    if min(image.shape[:2]) < window:
        image = pad_to_multiple(image, 1, minimum=window)
        labels = pad_to_multiple(labels, 1, minimum=window)
    y = int(rng.integers(0, image.shape[0] - window + 1))
    x = int(rng.integers(0, image.shape[1] - window + 1))
    img = image[y : y + window, x : x + window]
    lab = labels[y : y + window, x : x + window]
    if window != cfg.crop:
        size = (cfg.crop, cfg.crop)
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(np.int32)
    k = int(rng.integers(4))
    img, lab = np.rot90(img, k), np.rot90(lab, k)
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def jitter_stain(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Another stain for a colour crop: hue turned, saturation scaled, channels permuted."""
    if float(np.abs(img[..., 0] - img[..., 2]).mean()) < 0.02:  # grey: nothing to restain
        return img
    if rng.random() < cfg.stain_p:
        hsv = cv2.cvtColor(np.ascontiguousarray(img, np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-40, 40)) % 360
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 1)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.random() < cfg.shuffle_p:
        img = img[..., rng.permutation(3)]
    return img


def jitter_intensity(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Stain, brightness, contrast, gamma, tint, inversion, noise, blur on a [0, 1] image."""
    img = jitter_stain(img, cfg, rng)
    img = img ** float(np.exp(rng.uniform(-0.5, 0.5)))
    img = img * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)
    if rng.random() < cfg.tint_p:
        img = img * rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    if rng.random() < cfg.invert_p:
        img = 1.0 - img
    if rng.random() < cfg.noise_p:
        img = img + rng.normal(0, rng.uniform(0.01, 0.06), img.shape).astype(np.float32)
    if rng.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def training_pair(
    image: np.ndarray, labels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    img, lab = random_crop(image, labels, cfg, rng)
    return jitter_intensity(img, cfg, rng), targets(lab)


def validation_pair(image: np.ndarray, labels: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """The centre crop, unaugmented: a fixed yardstick for early stopping."""
    image = pad_to_multiple(image, 1, minimum=crop)
    labels = pad_to_multiple(labels, 1, minimum=crop)
    y = (image.shape[0] - crop) // 2
    x = (image.shape[1] - crop) // 2
    return image[y : y + crop, x : x + crop], targets(labels[y : y + crop, x : x + crop])
