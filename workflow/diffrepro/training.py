"""The training loop shared by every diffusion experiment: warmup + cosine LR, gradient
clipping, EMA with a half-life in images, resumable checkpoints, and a loss log."""

import copy
import math
import random
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .io import atomic_save, load_checkpoint


class TrainingDiverged(RuntimeError):
    pass


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def ema_decay(batch_size: int, halflife_images: float) -> float:
    # EDM (Karras 2022) specifies EMA by the half-life in images seen.
    return 0.5 ** (batch_size / halflife_images) if halflife_images > 0 else 0.0


def _rng_state(generator):
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(),
            "numpy": np.random.get_state()[1].copy(), "python": random.getstate()[1]}


def _restore_rng(state, generator):
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"], 624, 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def train(denoiser, schedule, loss_fn, data: torch.Tensor, cfg: dict, *, checkpoint_path=None,
          describe="", progress=True):
    """Train `denoiser` (its parameters) on `data` [N,C,H,W]; returns (ema_or_model_state, log rows).

    All randomness (data order, noise levels, noise) comes from one seeded generator whose state
    is checkpointed, so a resumed run is bit-identical to an uninterrupted one on CPU.
    """
    steps, batch, peak = cfg["steps"], cfg["batch_size"], cfg["lr"]
    warmup, clip = cfg.get("warmup", 0), cfg.get("grad_clip")
    every = cfg.get("checkpoint_every", steps)
    decay = ema_decay(batch, cfg.get("ema_halflife_images", 0))
    generator = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    random.seed(cfg["seed"])

    opt = torch.optim.Adam(denoiser.parameters(), lr=peak)
    ema = copy.deepcopy(denoiser).requires_grad_(False) if decay > 0 else None
    start, log, order, cursor = 0, [], None, 0
    if checkpoint_path is not None and checkpoint_path.exists():
        ck = load_checkpoint(checkpoint_path)
        if ck.get("describe") == describe:
            denoiser.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
            start, log, order, cursor = ck["step"], ck["log"], ck["order"], ck["cursor"]
            _restore_rng(ck["rng"], generator)

    n = data.shape[0]
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="train")
    t0, seen = time.perf_counter(), 0
    for step in bar:
        if order is None or cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        x0 = data[order[cursor:cursor + batch]]
        cursor += batch
        sigma = schedule.sample_sigma(x0.shape[0], generator=generator).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator)
        loss = loss_fn(denoiser, x0, sigma, noise)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at step {step} ({describe}); lower the learning "
                                   f"rate or check the schedule/parameterisation")
        lr = lr_at(step, steps, peak, warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(denoiser.parameters(), clip)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), denoiser.parameters()):
                    pe.lerp_(p, 1 - decay)
        seen += x0.shape[0]
        log.append({"step": step + 1, "loss": loss.item(), "lr": lr,
                    "images_per_s": seen / (time.perf_counter() - t0)})
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if checkpoint_path is not None and (step + 1) % every == 0 and step + 1 < steps:
            atomic_save({"describe": describe, "model": denoiser.state_dict(), "opt": opt.state_dict(),
                         "ema": ema.state_dict() if ema is not None else None, "step": step + 1, "log": log,
                         "order": order, "cursor": cursor, "rng": _rng_state(generator)}, checkpoint_path)
    final = ema if ema is not None else denoiser
    return final.state_dict(), log
