"""Pixel sanity numbers checked against hand-computable histograms."""

import numpy as np
import pytest

from diffrepro.pixel_stats import pixel_statistics


def test_identical_sets_are_zero_apart_and_black_vs_white_is_one():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 1, 8, 8), dtype=np.uint8)
    assert pixel_statistics(images, images[::-1])["pixel_w1"] == pytest.approx(0.0, abs=1e-12)
    black, white = np.zeros((4, 1, 8, 8), np.uint8), np.full((4, 1, 8, 8), 255, np.uint8)
    stats = pixel_statistics(white, black)
    assert stats["pixel_w1"] == pytest.approx(1.0) and stats["bright_fraction"] == 1.0


def test_w1_of_a_constant_shift_is_the_shift_and_bright_counts_levels_from_250():
    base = np.arange(0, 200, dtype=np.uint8).reshape(2, 1, 10, 10)
    assert pixel_statistics(base + 51, base)["pixel_w1"] == pytest.approx(51 / 255)
    images = np.array([0, 100, 249, 250, 255, 255, 10, 20], np.uint8).reshape(1, 1, 2, 4)
    assert pixel_statistics(images, images)["bright_fraction"] == pytest.approx(3 / 8)
