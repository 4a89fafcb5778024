"""Pixel-level sanity numbers of a sample set against its reference set.

A feature-space FID can look plausible for a set that has plainly diverged: at quick scale,
samplers that left a quarter of the pixels saturated white, or whole backgrounds grey, still
scored FID 50-70 with the classifier features. These two numbers make that visible next to FID.
"""

import numpy as np
from scipy.stats import wasserstein_distance

BRIGHT = 250  # uint8 level from which a pixel counts as (nearly) saturated white


def pixel_statistics(pixels: np.ndarray, reference_pixels: np.ndarray) -> dict:
    """uint8 images in, {pixel_w1, bright_fraction} out.

    pixel_w1: the 1-D Wasserstein distance between the two sets' intensity histograms, in units of
    the full range (0 = identical histograms, 1 = all black vs all white). bright_fraction: the
    share of the set's pixels at level >= BRIGHT (Fashion-MNIST's test split: about 1%)."""
    levels = np.arange(256)
    ours = np.bincount(pixels.ravel(), minlength=256)
    theirs = np.bincount(reference_pixels.ravel(), minlength=256)
    w1 = wasserstein_distance(levels, levels, ours, theirs) / 255.0
    return {"pixel_w1": float(w1), "bright_fraction": float(ours[BRIGHT:].sum() / ours.sum())}
