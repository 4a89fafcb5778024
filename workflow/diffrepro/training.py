"""The training loop shared by every diffusion experiment: warmup + cosine (or constant) LR, optional h-flip, gradient
clipping, EMA with a half-life in images and EDM's ramp-up, resumable checkpoints, and a loss log.

Resuming: a checkpoint holds the model, optimizer, EMA, data order + cursor, the loss log and
every RNG state (torch, numpy, python, the training generator), all as tensors and plain
Python values so `torch.load(weights_only=True)` reads it. A run killed at any point and
rerun continues from the last checkpoint and ends bit-identical on CPU to an uninterrupted
run (tests/test_reliability.py proves it on the real stage).

Device and speed settings (diffrepro.performance) change where the arithmetic runs, never the
random numbers: data order, noise levels and noise come from the CPU generator and are moved to
the device, so a run resumed on another device continues the same stream.

A checkpoint of another configuration (its `describe` differs) is ignored and overwritten; a
corrupt one stops the run with a line telling the user to delete it. We do not start over
silently: checkpoints are written atomically, so an unreadable one means something outside the
workflow went wrong (a full or failing disk, a flaky network filesystem), which the user should
see; and a transient read error must not throw away hours of paper-scale training.
"""

import copy
import csv
import math
import random
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import UserError
from .io import atomic_path, atomic_save, load_checkpoint
from .performance import (Performance, autocast, compile_module, configure_backends, place_batch, place_module,
                          resolve_device)

CHECKPOINT_KEYS = ("describe", "model", "opt", "ema", "step", "log", "order", "cursor", "rng")


class TrainingDiverged(UserError, RuntimeError):
    pass

# The 21 quick-scale networks' largest weights measured 1.1-1.3 in magnitude; a step with an absurd
# learning rate leaves 1e6 and more while the loss it logged was still finite.
MAX_ABS_WEIGHT = 1e4


def weight_blowup(tensors) -> float | None:
    """The largest |weight| if it is non-finite or above MAX_ABS_WEIGHT, else None."""
    floats = [t.detach() for t in tensors if t.is_floating_point()]
    peak = float(torch.nn.utils.get_total_norm(floats, norm_type=math.inf)) if floats else 0.0
    return None if math.isfinite(peak) and peak <= MAX_ABS_WEIGHT else peak



def lr_at(step: int, total: int, peak: float, warmup: int, decay: str = "cosine") -> float:
    """Linear warmup, then cosine decay to 0 or (DDPM, EDM) the peak held to the end."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if decay == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def random_hflip(x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2 (DDPM's CIFAR-10 augmentation)."""
    flip = torch.rand(x0.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x0.flip(-1), x0)


def ema_decay(batch_size: int, halflife_images: float, images_seen: float = math.inf,
              rampup_ratio: float = 0.0) -> float:
    """Per-step EMA decay for a half-life given in images seen (Karras 2022, App. F.3).

    With `rampup_ratio` r > 0 the half-life is capped at r * images_seen (EDM's training code
    uses r = 0.05), so the average forgets the random initial weights early on instead of
    carrying 0.5^(images / half-life) of them to the end of a short run.
    """
    if halflife_images <= 0:
        return 0.0
    if rampup_ratio > 0:
        halflife_images = min(halflife_images, rampup_ratio * images_seen)
    return 0.5 ** (batch_size / max(halflife_images, 1e-8))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python; call before building the network so its init is reproducible."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG state as tensors/ints/floats (numpy arrays would break weights_only loading)."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "state": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_initialized():  # dropout on a GPU draws from the CUDA generators
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n, p = state["numpy"], state["python"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


LOG_EVERY = 50  # steps between rewrites of the loss CSV: seconds apart at the quick scale, cheap at any size


def write_log(log: list, path) -> None:
    """The training log (one row per step) as CSV, replaced atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]) if log else ["step", "loss", "lr", "images_per_s"])
        writer.writeheader()
        writer.writerows(log)


def _resume(checkpoint_path, describe):
    """The checkpoint to continue from, or None (no file, or one of another configuration)."""
    if checkpoint_path is None or not checkpoint_path.exists():
        return None
    ck = load_checkpoint(checkpoint_path, "training checkpoint", required=CHECKPOINT_KEYS,
                         fix="delete it to start this training over from step 0")
    if ck["describe"] != describe:
        print(f"ignoring {checkpoint_path}: written for {ck['describe']}, now training {describe}",
              file=sys.stderr)
        return None
    print(f"resuming {describe} from step {ck['step']} ({checkpoint_path})", file=sys.stderr)
    return ck


def _cpu_state(module: torch.nn.Module) -> dict:
    # Files hold CPU tensors in the standard layout whatever device/memory format trained them
    # (on the CPU with the defaults these are the module's own tensors, unchanged).
    return {k: v.to("cpu", memory_format=torch.contiguous_format) for k, v in module.state_dict().items()}


def train(denoiser, schedule, loss_fn, data: torch.Tensor, cfg: dict, *, checkpoint_path=None,
          describe="", progress=True, performance: Performance | None = None, snapshots: dict | None = None,
          log_path=None):
    """Train `denoiser` (its parameters) on `data` [N,C,H,W]; returns (ema_or_model_state, log rows).

    `log_path`: a CSV of the log rows so far, rewritten every LOG_EVERY steps and at the end, so a
    running training's loss can be followed (make status) and plotted before it ends.
    `snapshots`: a dict filled with {images seen: EMA (or model) state} every `snapshot_every` steps
    before the last (checkpointed with the rest), for learning curves from one training run.

    All randomness (data order, noise levels, noise) comes from one seeded generator whose state
    is checkpointed, so a resumed run is bit-identical to an uninterrupted one on CPU.
    `performance`: device, bf16 autocast, TF32, channels_last, compile (default: CPU, float32);
    the module is moved there for training and back to the CPU afterwards.
    """
    steps, batch, peak = cfg["steps"], cfg["batch_size"], cfg["lr"]
    warmup, clip = cfg.get("warmup", 0), cfg.get("grad_clip")
    lr_decay, hflip = cfg.get("lr_decay", "cosine"), cfg.get("hflip", False)
    every = cfg.get("checkpoint_every", steps)
    snapshot_every = cfg.get("snapshot_every", 0) if snapshots is not None else 0
    halflife, rampup = cfg.get("ema_halflife_images", 0), cfg.get("ema_rampup_ratio", 0.05)
    generator = torch.Generator().manual_seed(cfg["seed"])
    seed_everything(cfg["seed"])  # dropout and anything else drawing from the global RNGs
    performance = performance or Performance(device="cpu")
    device = resolve_device(performance.device)
    configure_backends(performance, device)
    place_module(denoiser, performance, device)
    print(f"training on {device}: {performance}", file=sys.stderr)

    opt = torch.optim.Adam(denoiser.parameters(), lr=peak)
    ema = copy.deepcopy(denoiser).requires_grad_(False) if halflife > 0 else None
    compile_module(denoiser, performance)  # after the EMA copy, which is averaged, never called
    start, log, order, cursor = 0, [], None, 0
    ck = _resume(checkpoint_path, describe)
    if ck is not None:
        denoiser.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        start, log, order, cursor = ck["step"], ck["log"], ck["order"], ck["cursor"]
        restore_rng(ck["rng"], generator)
        if snapshots is not None:
            snapshots.update(ck.get("snapshots") or {})

    n = data.shape[0]
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="train")
    t0, seen = time.perf_counter(), 0
    for step in bar:
        if order is None or cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        x0 = data[order[cursor:cursor + batch]]
        cursor += batch
        if hflip:
            x0 = random_hflip(x0, generator)
        sigma = schedule.sample_sigma(x0.shape[0], generator=generator).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator)
        x0, sigma, noise = (place_batch(t, performance, device) for t in (x0, sigma, noise))
        with autocast(performance, device):
            loss = loss_fn(denoiser, x0, sigma, noise)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training diverged: loss is {loss.item()} at step {step + 1} of {steps} "
                                   f"({describe}); lower train.lr (now {peak:g}) or check the "
                                   f"schedule/parameterisation/loss of this experiment")
        lr = lr_at(step, steps, peak, warmup, lr_decay)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(denoiser.parameters(), clip)
        opt.step()
        peak_weight = weight_blowup(denoiser.parameters())
        if peak_weight is not None:
            raise TrainingDiverged(f"training diverged: a weight reached |w| = {peak_weight:.3g} at step {step + 1} of "
                                   f"{steps} while the loss was {loss.item():.4g} ({describe}); lower train.lr "
                                   f"(now {peak:g}) or check the schedule/parameterisation/loss of this experiment")
        if ema is not None:
            decay = ema_decay(batch, halflife, (step + 1) * batch, rampup)
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), denoiser.parameters()):
                    pe.lerp_(p, 1 - decay)
        seen += x0.shape[0]
        log.append({"step": step + 1, "loss": loss.item(), "lr": lr,
                    "images_per_s": seen / (time.perf_counter() - t0)})
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if log_path is not None and ((step + 1) % LOG_EVERY == 0 or step + 1 == steps):
            write_log(log, log_path)
        if snapshot_every and (step + 1) % snapshot_every == 0 and step + 1 < steps:
            # cloned: on the CPU _cpu_state hands out the module's own tensors, which keep changing
            snapshots[(step + 1) * batch] = {k: v.clone() for k, v in _cpu_state(ema if ema is not None else denoiser).items()}
        if checkpoint_path is not None and (step + 1) % every == 0 and step + 1 < steps:
            atomic_save({"describe": describe, "model": _cpu_state(denoiser), "opt": opt.state_dict(),
                         "ema": _cpu_state(ema) if ema is not None else None, "step": step + 1, "log": log,
                         "order": order, "cursor": cursor, "rng": rng_state(generator),
                         "snapshots": snapshots}, checkpoint_path)
    final = _cpu_state(ema if ema is not None else denoiser)
    denoiser.to("cpu", memory_format=torch.contiguous_format)
    return final, log
