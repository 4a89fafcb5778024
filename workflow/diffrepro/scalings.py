"""Input scalings: how images in [0, 1] ("image space") become the data a diffusion model sees.

The papers disagree here (DDPM: [-1,1]; the fast.ai course: [0,1] then [-0.5,0.5]; EDM reasons
in sigma_data) and the suite compares them, so every stage converts through this one module.
"""

from dataclasses import dataclass

# Pixel mean and std of the Fashion-MNIST training split, zero-padded to 32x32, in [0, 1]
# (measured by tests/test_data.py from the data itself).
FMNIST_MEAN = 0.2190
FMNIST_STD = 0.3318


@dataclass(frozen=True)
class Scaling:
    name: str
    shift: float  # model = (image - shift) * multiplier
    multiplier: float

    def to_model(self, images):
        return (images - self.shift) * self.multiplier

    def to_image(self, x):
        return x / self.multiplier + self.shift

    @property
    def sigma_data(self) -> float:
        """Std of the scaled Fashion-MNIST data (EDM's sigma_data for this scaling)."""
        return FMNIST_STD * self.multiplier


SCALINGS = {
    "unit": Scaling("unit", 0.0, 1.0),  # [0, 1]
    "centered": Scaling("centered", 0.5, 1.0),  # [-0.5, 0.5]
    "symmetric": Scaling("symmetric", 0.5, 2.0),  # [-1, 1]
    "standardized": Scaling("standardized", FMNIST_MEAN, 1.0 / FMNIST_STD),  # zero mean, unit std
}


def get_scaling(name: str) -> Scaling:
    try:
        return SCALINGS[name]
    except KeyError:
        raise ValueError(f"unknown input scaling {name!r}; allowed: {', '.join(SCALINGS)}") from None


def misread(images, actual: str, assumed: str):
    """Image-space images as seen by code that takes data in scaling `actual` for `assumed`.

    misread(u, "centered", "symmetric") = u / 2 + 0.25 is the fast.ai course's retracted-FID bug:
    [-0.5, 0.5] samples and reference given to a classifier trained on [-1, 1].
    """
    return get_scaling(assumed).to_image(get_scaling(actual).to_model(images))
