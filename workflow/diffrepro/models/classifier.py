"""The Fashion-MNIST classifier whose pre-logit activations are the FID/KID features.

This is the fast.ai course's FID method (lessons 20-23; docs/papers.md §0 and §7): a small ResNet
trained by the workflow itself on Fashion-MNIST, its global-average-pooled last stage used as the
feature vector.
The network takes images in [-1, 1]; `classifier_input_from_uint8` is the one place where
stored pixels are mapped into that range (for training and for feature extraction alike).

Feature size: 8 * width, 128 at the default width 16. FID needs a d x d covariance estimated
from the samples; at the course's 2048 samples d = 128 leaves 16 samples per dimension, so the
estimate is full-rank and sqrtm is well conditioned, while 128 channels of a 4x4 map still
separate the ten classes at >= 90 % test accuracy. (The course used 512-d; wider widths give that.)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..io import atomic_save, load_checkpoint

N_CLASSES = 10


def classifier_input_from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in {0..255} -> float32 in [-1, 1], the range the classifier is trained on."""
    return pixels.to(torch.float32) / 127.5 - 1.0


class ResBlock(nn.Module):
    """Two 3x3 convs with a projection shortcut (He et al. 2016, Fig. 2 with option B)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class FashionClassifier(nn.Module):
    """ResNet for 1x32x32 images in [-1, 1]: stem at 32x32, then stages at 16, 8 and 4 pixels.

    Widths (w, 2w, 4w, 8w); `features` is the pooled 8w-d pre-logit vector, `forward` the logits.
    """

    def __init__(self, width: int = 16, in_channels: int = 1, n_classes: int = N_CLASSES):
        super().__init__()
        self.config = {"width": int(width), "in_channels": int(in_channels), "n_classes": int(n_classes)}
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        self.stages = nn.Sequential(ResBlock(w, 2 * w, 2), ResBlock(2 * w, 4 * w, 2), ResBlock(4 * w, 8 * w, 2))
        self.head = nn.Linear(8 * w, n_classes)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _as_tensor(images_uint8, labels=None):
    images = torch.tensor(np.asarray(images_uint8))  # a copy: the source may be a read-only buffer
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"classifier images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if labels is None:
        return images
    return images, torch.tensor(np.asarray(labels), dtype=torch.long)


def random_shift_and_flip(batch: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by up to `max_shift` pixels (zero fill, like the 28->32 padding) and h-flip half."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).tolist()
    shifted = torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx))])
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], shifted.flip(-1), shifted)


@torch.no_grad()
def predict_labels(model: FashionClassifier, images_uint8, batch_size: int = 1000) -> np.ndarray:
    images = _as_tensor(images_uint8)
    model.eval()
    out = [model(classifier_input_from_uint8(images[i : i + batch_size])).argmax(1) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def train_classifier(
    train_images_uint8,
    train_labels,
    test_images,
    test_labels,
    *,
    epochs: float = 2.0,
    batch_size: int = 256,
    lr: float = 5e-3,
    width: int = 16,
    seed: int = 0,
    threads: int | None = None,
    augment: bool = False,
    progress: bool = True,
) -> tuple[FashionClassifier, float]:
    """Train with AdamW and a one-cycle LR (Smith & Topin 2019); return (model in eval mode, test accuracy).

    Images are uint8 [N, 1, 32, 32]; `epochs` may be fractional (the one-cycle schedule spans
    exactly ceil(epochs * N / batch_size) steps).
    """
    images, labels = _as_tensor(train_images_uint8, train_labels)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = FashionClassifier(width=width, in_channels=images.shape[1])
        total_steps = max(1, math.ceil(epochs * len(images) / batch_size))
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total_steps)
        model.train()
        step = 0
        with tqdm(total=total_steps, desc="classifier", disable=not progress) as bar:
            while step < total_steps:
                order = torch.randperm(len(images), generator=generator)
                for start in range(0, len(images), batch_size):
                    if step == total_steps:
                        break
                    index = order[start : start + batch_size]
                    x = classifier_input_from_uint8(images[index])
                    if augment:
                        x = random_shift_and_flip(x + 1.0, generator) - 1.0  # shift in [0, 2] so the fill is black
                    loss = F.cross_entropy(model(x), labels[index])
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    schedule.step()
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
        accuracy = float((predict_labels(model, test_images) == np.asarray(test_labels)).mean())
    finally:
        torch.set_num_threads(previous_threads)
    return model.eval(), accuracy


def save_classifier(model: FashionClassifier, path, meta: dict | None = None) -> None:
    """Store config + state_dict + meta (plain numbers/strings only, so weights_only loading works)."""
    atomic_save({"config": dict(model.config), "state_dict": model.state_dict(), "meta": dict(meta or {})}, path)


def load_classifier(path) -> tuple[FashionClassifier, dict]:
    """Rebuild the classifier saved by `save_classifier`; returns (model in eval mode, meta)."""
    stored = load_checkpoint(Path(path), "classifier file", required=("config", "state_dict", "meta"))
    model = FashionClassifier(**stored["config"])
    model.load_state_dict(stored["state_dict"])
    model.requires_grad_(False)
    return model.eval(), stored["meta"]
