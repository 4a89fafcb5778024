"""The fast.ai course's noise-level ("t") predictor for its t-free sampler (lesson 22, notebook
22_noise-pred; docs/papers.md §0).

A ResNet classifier body (models.classifier.FashionClassifier) with a one-output head reads a noisy
VP-frame image x_vp = sqrt(abar) x0 + sqrt(1 - abar) eps, abar ~ U(0, 1) per image, and regresses
logit(abar) with MSE (losses.noise_level_loss); denoisers.NoiseLevelPredictor wraps it. Training
reuses training.train (LR schedule, clipping, resumable checkpoints) with `UniformAlphaBar` in the
place of a diffusion schedule.

Baseline: a constant prediction c scores E[(logit(abar) - c)^2] = pi^2/3 + c^2, since logit(U) for
U ~ U(0, 1) is standard logistic (mean 0, variance pi^2/3 ≈ 3.29); c = 0 is the best constant.
The course reported 0.075 for its predictor against 3.57 for a constant.
"""

import math

import torch

from .denoisers import NoiseLevelPredictor
from .io import atomic_save, load_checkpoint
from .losses import LOSSES
from .models.classifier import FashionClassifier
from .noise import log_snr_from_sigma, sigma_from_alpha_bar
from .training import seed_everything, train

# The course drew abar with float32 torch.rand, whose resolution 2^-24 bounds |logit(abar)| by 16.6;
# we draw in float64 and keep that range, so targets stay finite and predictions stay inside it.
ALPHA_BAR_MIN = 2.0**-24
LOGIT_MAX = math.log((1 - ALPHA_BAR_MIN) / ALPHA_BAR_MIN)
CONSTANT_MSE = math.pi**2 / 3  # Var(logit(U)), U ~ U(0,1): the standard logistic distribution's variance


def sample_alpha_bar(n: int, generator=None) -> torch.Tensor:
    """abar ~ U(0, 1) per image (float64), kept within [2^-24, 1 - 2^-24]."""
    return torch.rand(n, generator=generator, dtype=torch.float64).clamp(ALPHA_BAR_MIN, 1 - ALPHA_BAR_MIN)


class UniformAlphaBar:
    """The predictor's training distribution of noise levels, as a schedule for training.train."""

    def sample_sigma(self, n, generator=None):
        return sigma_from_alpha_bar(sample_alpha_bar(n, generator))


def build_noise_level_predictor(width: int = 16, in_channels: int = 1) -> NoiseLevelPredictor:
    return NoiseLevelPredictor(FashionClassifier(width=width, in_channels=in_channels, n_classes=1))


def train_noise_level_predictor(data: torch.Tensor, settings: dict, *, checkpoint_path=None, describe="",
                                progress=False):
    """(predictor in eval mode, loss log) trained on `data` [N, C, H, W] in the model's input scaling.

    settings: width, steps, batch_size, lr, warmup, grad_clip, seed (and optionally checkpoint_every).
    No EMA: the averaged copy would keep the BatchNorm statistics of initialisation.
    """
    seed_everything(settings["seed"])
    predictor = build_noise_level_predictor(settings["width"], data.shape[1])
    cfg = {key: settings[key] for key in ("steps", "batch_size", "lr", "warmup", "grad_clip", "seed")}
    cfg["checkpoint_every"] = settings.get("checkpoint_every", settings["steps"])
    cfg["ema_halflife_images"] = 0
    state, log = train(predictor, UniformAlphaBar(), LOSSES["noise_level"], data, cfg,
                       checkpoint_path=checkpoint_path, describe=describe, progress=progress)
    predictor.load_state_dict(state)
    return predictor.eval(), log


@torch.no_grad()
def evaluate_noise_level_predictor(predictor: NoiseLevelPredictor, images: torch.Tensor, *, seed: int = 0,
                                   batch_size: int = 500) -> dict:
    """MSE on logit(abar) over `images` (one abar ~ U(0,1) and one noise draw per image), and the
    MSE of the best constant predictor (0) on the same draws, whose expectation is pi^2/3."""
    predictor.eval()
    generator = torch.Generator().manual_seed(seed)
    total, total_constant = 0.0, 0.0
    for start in range(0, len(images), batch_size):
        x0 = images[start:start + batch_size]
        sigma = sigma_from_alpha_bar(sample_alpha_bar(len(x0), generator))
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        total += len(x0) * float(LOSSES["noise_level"](predictor, x0, sigma.to(x0.dtype), noise))
        total_constant += float((log_snr_from_sigma(sigma) ** 2).sum())  # logit(abar) = log SNR
    return {"noise_level_mse": total / len(images), "noise_level_mse_constant": total_constant / len(images)}


@torch.no_grad()
def predicted_vs_true(predictor: NoiseLevelPredictor, images: torch.Tensor, *, seed: int = 0) -> dict:
    """{"alpha_bar": true abar, "alpha_bar_predicted": ...} for one abar ~ U(0, 1) per image (for plots)."""
    predictor.eval()
    generator = torch.Generator().manual_seed(seed)
    alpha_bar = sample_alpha_bar(len(images), generator)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    x_vp = alpha_bar.sqrt().to(images.dtype).view(-1, 1, 1, 1) * images \
        + (1 - alpha_bar).sqrt().to(images.dtype).view(-1, 1, 1, 1) * noise
    return {"alpha_bar": alpha_bar.numpy(), "alpha_bar_predicted": predictor.predict_alpha_bar(x_vp).double().numpy()}


def save_noise_level_predictor(predictor: NoiseLevelPredictor, path, meta: dict | None = None) -> None:
    """config + state_dict + meta (plain values only, so weights_only loading reads it), atomically."""
    atomic_save({"config": dict(predictor.net.config), "state_dict": predictor.state_dict(),
                 "meta": dict(meta or {})}, path)


def load_predictor(path) -> tuple:
    """(NoiseLevelPredictor in eval mode, meta) from a file written by save_noise_level_predictor."""
    stored = load_checkpoint(path, "noise-level predictor", required=("config", "state_dict", "meta"))
    predictor = NoiseLevelPredictor(FashionClassifier(**stored["config"]))
    predictor.load_state_dict(stored["state_dict"])
    predictor.requires_grad_(False)
    return predictor.eval(), stored["meta"]


def load_noise_level_predictor(path, device="cpu"):
    """The callable samplers.tfree_ddim takes: x_vp [B, ...] -> abar [B] in (0, 1), in x_vp's dtype.

    Logits are kept within the training range (|logit| <= LOGIT_MAX), so abar never reaches 0 or 1.
    `device`: where the sampler's images are (the predictor runs there).
    """
    predictor, _ = load_predictor(path)
    predictor.to(device)
    dtype = next(predictor.parameters()).dtype

    @torch.no_grad()
    def alpha_bar(x_vp):
        logit = predictor(x_vp.to(dtype)).double().clamp(-LOGIT_MAX, LOGIT_MAX)
        return torch.sigmoid(logit).to(x_vp.dtype)

    return alpha_bar
