"""The FID feature classifier: shapes, the uint8 -> [-1, 1] map, augmentation, save/load round trip.

The >= 90 % test accuracy of the real training run is checked by the workflow on its output;
here a tiny run on synthetic, trivially separable classes shows that training learns at all.
"""

import numpy as np
import pytest
import torch

from diffrepro.models.classifier import (
    FashionClassifier,
    classifier_input_from_uint8,
    load_classifier,
    predict_labels,
    random_shift_and_flip,
    save_classifier,
    train_classifier,
)


def bar_images(n, seed=0):
    """Class k = a bright horizontal bar in rows 4+2k..5+2k of a 32x32 image, plus pixel noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 1, 32, 32))
    for i, k in enumerate(labels):
        images[i, 0, 6 + 2 * k : 8 + 2 * k, 6:26] = 255
    return images.astype(np.uint8), labels


def test_uint8_maps_onto_minus_one_one():
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8)
    np.testing.assert_allclose(classifier_input_from_uint8(pixels).numpy(), [-1.0, 51 / 127.5 - 1, 1.0], rtol=1e-6)


@pytest.mark.parametrize("width", [4, 16])
def test_shapes(width):
    model = FashionClassifier(width=width).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert model.feature_dim == 8 * width
    assert model.features(x).shape == (3, 8 * width)
    assert model(x).shape == (3, 10)


def test_shift_and_flip_moves_a_pixel_within_reach():
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(64, 1, 32, 32)
    batch[:, 0, 10, 12] = 1.0
    out = random_shift_and_flip(batch, generator, max_shift=2)
    assert out.shape == batch.shape
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))  # nothing lost, nothing added
    rows, cols = (out[:, 0] == 1).nonzero()[:, 1:].T
    assert ((rows - 10).abs() <= 2).all()
    # unflipped: column 12 +- 2; flipped: column 31 - 12 = 19 +- 2
    assert (((cols - 12).abs() <= 2) | ((cols - 19).abs() <= 2)).all()
    assert ((cols - 19).abs() <= 2).any() and ((cols - 12).abs() <= 2).any()


def test_tiny_training_run_learns_and_round_trips(tmp_path):
    images, labels = bar_images(400)
    test_images, test_labels = bar_images(200, seed=1)
    model, accuracy = train_classifier(
        images, labels, test_images, test_labels,
        epochs=3, batch_size=32, lr=5e-3, width=4, seed=0, threads=1, augment=False, progress=False,
    )
    assert not model.training
    assert accuracy > 0.5  # chance is 0.1
    assert accuracy == pytest.approx(float((predict_labels(model, test_images) == test_labels).mean()))

    path = tmp_path / "classifier.pt"
    save_classifier(model, path, {"test_accuracy": accuracy, "epochs": 3})
    torch.load(path, weights_only=True)  # loadable without unpickling code
    loaded, meta = load_classifier(path)
    assert meta == {"test_accuracy": accuracy, "epochs": 3}
    assert loaded.config == {"width": 4, "in_channels": 1, "n_classes": 10}
    x = classifier_input_from_uint8(torch.from_numpy(test_images[:16]))
    with torch.no_grad():
        assert torch.equal(loaded.features(x), model.features(x))


def test_augmented_training_runs():
    images, labels = bar_images(64)
    model, accuracy = train_classifier(
        images, labels, images, labels, epochs=1, batch_size=32, lr=1e-3, width=4, seed=0, augment=True, progress=False
    )
    assert 0.0 <= accuracy <= 1.0


def test_training_is_reproducible_for_a_seed():
    images, labels = bar_images(64)
    kwargs = dict(epochs=1, batch_size=32, lr=1e-3, width=4, seed=3, augment=True, progress=False)
    a, _ = train_classifier(images, labels, images, labels, **kwargs)
    b, _ = train_classifier(images, labels, images, labels, **kwargs)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_float_images_are_refused():
    images, labels = bar_images(8)
    with pytest.raises(ValueError, match="uint8"):
        train_classifier(images / 255.0, labels, images, labels, epochs=1, batch_size=4, lr=1e-3, width=4, seed=0)
