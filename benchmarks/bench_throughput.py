"""Throughput of this machine and of our networks, in one table (`make bench`).

Not a test. Measures, on the GPU when there is one, else on the CPU with all cores:
(a) the dense-matmul peak: torch.matmul of large square float32 matrices (and bfloat16 on a GPU,
    or with --bf16), best of a few;
(b) training images/s of the quick-scale UNet (workflow/config.yaml `scales.quick.unet`, built by
    diffrepro.build) at the quick training batch size: forward, MSE loss, backward, Adam step.
    FLOPs of one forward+backward come from torch.utils.flop_counter.FlopCounterMode (matmuls,
    convolutions, attention; not the elementwise work), so "% of peak" is how much of the matmul
    peak those kernels reach;
(c) the same for diffusers' UNet2DModel with the same widths, blocks, attention levels and groups
    (the same parameter count), and the ratio ours/diffusers;
(d) sampling NFE/s: network forward passes per second at the quick sampling batch size;
(e) FID feature throughput: images/s through the project's Fashion-MNIST classifier extractor
    (diffrepro.features, quick-scale width), uint8 pixels in, features out.

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_throughput.py [--quick] [--threads N]

--quick shrinks every size so the whole run takes seconds (for tests/test_bench_throughput.py);
its figures say nothing about the machine.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from diffrepro.build import build_network
from diffrepro.features import FMNIST_CLASSIFIER, Extractor, extract_features
from diffrepro.models.classifier import FashionClassifier, save_classifier
from diffrepro.performance import Performance, autocast, resolve_device

CONFIG = Path(__file__).resolve().parents[1] / "workflow" / "config.yaml"


# ------------------------------------------------------------------ sizes of a full and a --quick run

def sizes(quick_scale: dict, quick_run: bool, device: torch.device) -> dict:
    if quick_run:
        return {"matmul_n": 256, "matmul_repeats": 2, "train_batch": 8, "train_steps": 2, "sample_batch": 16,
                "forwards": 2, "feature_images": 256, "feature_batch": 128}
    return {"matmul_n": 8192 if device.type == "cuda" else 2048, "matmul_repeats": 5,
            "train_batch": quick_scale["train"]["batch_size"], "train_steps": 10,
            "sample_batch": quick_scale["sampling"]["batch_size"], "forwards": 5,
            "feature_images": 20000 if device.type == "cuda" else 4096, "feature_batch": 256}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(run, repeats: int, device: torch.device) -> float:
    """Fastest of `repeats` timed calls, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------------ (a) matmul peak

def matmul_peak(n: int, dtype: torch.dtype, repeats: int, device: torch.device) -> float:
    """FLOP/s of an n x n x n matmul (2 n^3 floating-point operations)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(device=device, dtype=dtype) for _ in range(2))
    return 2 * n ** 3 / best_seconds(lambda: torch.matmul(a, b), repeats, device)


# ------------------------------------------------------------------ (b, c) the two networks

def our_unet(quick_scale: dict) -> tuple:
    """(module, forward(x, t) -> output) of the quick-scale UNet."""
    net = build_network({"unet": quick_scale["unet"]})
    return net, net


def diffusers_unet(quick_scale: dict) -> tuple:
    """diffusers' UNet2DModel laid out like ours: the same widths, res blocks per level (one more
    on the way up), attention at the same levels and in the middle, 32-channel heads, GroupNorm."""
    from diffusers import UNet2DModel

    unet = quick_scale["unet"]
    levels = range(len(unet["channels"]))
    attention = set(unet["attention_levels"])
    down = [("AttnDownBlock2D" if i in attention else "DownBlock2D") for i in levels]
    up = [("AttnUpBlock2D" if i in attention else "UpBlock2D") for i in reversed(levels)]
    model = UNet2DModel(sample_size=quick_scale["resolution"], in_channels=1, out_channels=1,
                        block_out_channels=tuple(unet["channels"]), layers_per_block=unet["blocks_per_level"],
                        down_block_types=tuple(down), up_block_types=tuple(up),
                        norm_num_groups=unet["groups"], attention_head_dim=32)
    return model, lambda x, t: model(x, t).sample


def inputs(batch: int, resolution: int, device: torch.device) -> tuple:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, resolution, resolution, generator=generator).to(device)
    t = (torch.rand(batch, generator=generator) * 999).to(device)
    return x, t, torch.randn(x.shape, generator=generator).to(device)


def training_flops(forward, x, t, target, performance, device) -> int:
    """FLOPs FlopCounterMode counts in one forward + backward at this batch."""
    with FlopCounterMode(display=False) as counter:
        with autocast(performance, device):
            loss = torch.nn.functional.mse_loss(forward(x, t).float(), target)
        loss.backward()
    return counter.get_total_flops()


def training_step(module, forward, x, t, target, performance, device):
    """One Adam step of MSE training on fixed inputs, as a callable: what the training figures time."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(performance, device):
            loss = torch.nn.functional.mse_loss(forward(x, t).float(), target)
        loss.backward()
        optimizer.step()

    return step


def training_images_per_second(module, forward, x, t, target, steps, performance, device) -> float:
    step = training_step(module, forward, x, t, target, performance, device)

    def run():
        for _ in range(steps):
            step()

    return steps * x.shape[0] / best_seconds(run, 1, device)


def sampling_nfe_per_second(forward, x, t, calls, performance, device) -> float:
    def run():
        with torch.inference_mode(), autocast(performance, device):
            for _ in range(calls):
                forward(x, t)

    return calls / best_seconds(run, 1, device)


def measure_network(make, quick_scale, size, performance, device) -> dict:
    module, forward = make(quick_scale)
    module.to(device).train()
    resolution = quick_scale["resolution"]
    x, t, target = inputs(size["train_batch"], resolution, device)
    flops = training_flops(forward, x, t, target, performance, device)
    images_per_s = training_images_per_second(module, forward, x, t, target, size["train_steps"], performance, device)
    module.eval()
    x, t, _ = inputs(size["sample_batch"], resolution, device)
    return {"parameters": sum(p.numel() for p in module.parameters()),
            "train_images_per_s": images_per_s,
            "train_flop_per_image": flops / size["train_batch"],
            "train_flop_per_s": flops / size["train_batch"] * images_per_s,
            "nfe_per_s": sampling_nfe_per_second(forward, x, t, size["forwards"], performance, device)}


# ------------------------------------------------------------------ (e) FID features

def feature_images_per_second(quick_scale: dict, size: dict, device: torch.device) -> float:
    classifier = FashionClassifier(width=quick_scale["classifier"]["width"]).eval()
    pixels = np.random.default_rng(0).integers(0, 256, (size["feature_images"], 1, 32, 32), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "classifier.pt"
        save_classifier(classifier, path)
        module = Extractor(FMNIST_CLASSIFIER, path).build()
    seconds = best_seconds(lambda: extract_features(pixels, module, batch_size=size["feature_batch"], device=device),
                           1, device)
    return len(pixels) / seconds


# ------------------------------------------------------------------ the table

def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def number(value, scale=1.0, digits=1) -> str:
    return "-" if value is None else f"{value / scale:,.{digits}f}"


def table(peaks: dict, network_dtype: str, ours: dict, theirs: dict | None, features: float, size: dict) -> list:
    """Rows (quantity, ours, diffusers, ours/diffusers) as strings; "% of peak" is of the matmul
    peak in the precision the networks ran in (`network_dtype`)."""
    theirs = theirs or {}
    peak = peaks[network_dtype]
    rows = [(f"matmul peak {dtype} (GFLOP/s, n={size['matmul_n']})", number(flops, 1e9), "-", "-")
            for dtype, flops in peaks.items()]

    def pair(label, key, scale=1.0, digits=1):
        rows.append((label, number(ours[key], scale, digits), number(theirs.get(key), scale, digits),
                     ratio(ours[key], theirs.get(key))))

    pair("parameters (M)", "parameters", 1e6, 3)
    pair(f"train images/s (batch {size['train_batch']})", "train_images_per_s")
    pair("train GFLOP per image (fwd+bwd)", "train_flop_per_image", 1e9, 3)
    pair("train GFLOP/s", "train_flop_per_s", 1e9)
    rows.append((f"train % of {network_dtype} matmul peak", number(100 * ours["train_flop_per_s"] / peak),
                 number(100 * theirs["train_flop_per_s"] / peak) if theirs else "-",
                 ratio(ours["train_flop_per_s"], theirs.get("train_flop_per_s"))))
    pair(f"sampling NFE/s (batch {size['sample_batch']})", "nfe_per_s", 1.0, 2)
    rows.append((f"FID features images/s (batch {size['feature_batch']})", number(features, 1.0, 0), "-", "-"))
    return rows


def print_table(rows: list, header=("quantity", "ours", "diffusers", "ours/diffusers")) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: runs in seconds, for the test")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads (default: every core this process may use)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--bf16", action="store_true", help="run the networks under bfloat16 autocast")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    performance = Performance(device=args.device, bf16=args.bf16)
    device = resolve_device(args.device)
    quick_scale = yaml.safe_load(CONFIG.read_text())["scales"]["quick"]
    size = sizes(quick_scale, args.quick, device)

    peaks = {"float32": matmul_peak(size["matmul_n"], torch.float32, size["matmul_repeats"], device)}
    if device.type == "cuda" or args.bf16:
        peaks["bfloat16"] = matmul_peak(size["matmul_n"], torch.bfloat16, size["matmul_repeats"], device)
    ours = measure_network(our_unet, quick_scale, size, performance, device)
    try:
        theirs = measure_network(diffusers_unet, quick_scale, size, performance, device)
    except ImportError:
        theirs = None  # diffusers is a test requirement; without it the column stays empty
    features = feature_images_per_second(quick_scale, size, device)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; networks in {'bfloat16 autocast' if args.bf16 else 'float32'}"
          f"{'; --quick sizes (not a measurement)' if args.quick else ''}")
    print_table(table(peaks, "bfloat16" if args.bf16 else "float32", ours, theirs, features, size))


if __name__ == "__main__":
    main()
