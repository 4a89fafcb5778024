"""One prepared GPU check (`make gpu-check`): paper-scale throughput and the course's cosine-model FID.

Written for a bare GPU box (one H200, Python 3.12, torch with CUDA; no Snakemake, no network):
it calls the library directly (diffrepro.plan.Plan for the specs, diffrepro.build,
diffrepro.training.train, diffrepro.sampling.draw_samples, diffrepro.metrics.compute_metrics),
never the workflow. docs/gpu.md says how to pack and run it.

(a) Throughput of the three paper-scale networks, each built from its resolved training spec
    (Plan(...).training_spec at scale `paper`, then diffrepro.build.build_network):
    the course's Fashion-MNIST UNet (config.yaml scales.paper.unet), DDPM's CIFAR-10 UNet
    (replications/ddpm_2020.yaml, Ho et al. 2020: 35.7M parameters) and EDM's (replications/
    karras_edm_2022.yaml, Karras et al. 2022: ~56M). Per network, six settings: all off, bf16
    autocast on, TF32 on, channels_last on, torch.compile on, all on. Per setting: training
    images/s at the spec's batch size (forward, loss, backward, Adam step) and its % of the bf16
    matmul peak (measured like benchmarks/bench_throughput.py: best of a few 8192^3 matmuls;
    FLOPs of the UNet from FlopCounterMode, so only matmuls/convolutions/attention count), and
    sampling NFE/s at the paper sampling batch size (512 Fashion-MNIST, 500 CIFAR-10).
(b) tfree_fastai/cosine_t (the course's cosine model, lesson 22) trained with its paper-scale
    spec (scales.paper.train: 3000 steps of 512 = 25.6 epochs, bf16/TF32/channels_last), sampled
    with DDIM eta 1 at 100 steps (fastai_fmnist.yaml `cosine`, paper steps [50, 100]), 2048
    samples, scored by diffrepro.metrics.compute_metrics (torch-fidelity and clean-fid) with the
    workflow's Fashion-MNIST classifier features against the 10k test split. The classifier is
    trained by diffrepro.models.classifier.train_classifier at scales.paper.classifier (width 32)
    but 3 epochs, not 20 (--classifier-epochs): that code runs on the CPU, in a child process
    on the host's cores while the GPU works. The course reported FID 3.29 (lesson 22) and
    3.10 on a repeat, with its own 512-d ResNet features: a guide, not a target (README).
(c) Every number in one printed table and in <out>/gpu_check.csv.

Budget on one H200 (bf16 matmul peak ~790 TFLOP/s; FP32 ~67). FLOPs per image of forward +
backward, counted here with FlopCounterMode: course UNet (15.9M) 4.76 GFLOP, DDPM (35.7M) 37.3,
EDM (54.7M) 125.1; classifier (width 32) 0.27. Estimates, not measurements:
  (a) each row times ~2 s of steps after a warm-up (timed_count), plus ~2 s of sampling: the
      slowest, EDM's fp32 step of 512 (64 TFLOP), is ~1-2 s. Compile rows add 30-90 s of
      compilation each. Cap 270 s; rows past it are written as "skipped".
  (b) training 3000 x 512 x 4.76 GFLOP = 7.3 PFLOP: ~30-90 s at 10-30% of peak; cap 120 s, using
      part (a)'s measured all-on rate to cut steps (the table says so). Sampling 2048 x 100 x
      1.6 GFLOP = 0.3 PFLOP: seconds. The classifier trains on the CPU from the start (3 epochs:
      180k images at ~100 images/s per thread measured here, ~2-4 min on 14 host cores), waited
      for at most 120 s after sampling. Scoring: seconds.
  Start-up, data, imports ~30 s: total ~6-8 min.

--tiny runs every part at toy size on the CPU in well under a minute (for tests/test_gpu_check.py):
tiny networks, 3 training steps, 64 samples at 4 steps, a width-8 classifier on 512 images,
torch.compile with the "eager" backend (inductor would need a C++ compiler and minutes); its
figures say nothing about any machine.

    PYTHONPATH=workflow python benchmarks/gpu_check.py --data /usr/share/datasets/fashion-mnist --out gpu_out [--tiny]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_throughput import best_seconds, matmul_peak, print_table, training_flops, training_step  # noqa: E402

from diffrepro.build import build_loss, build_model, build_network  # noqa: E402
from diffrepro.config import load_config  # noqa: E402
from diffrepro.plan import Plan  # noqa: E402
from diffrepro.replications import load_replications  # noqa: E402
from diffrepro.data import load_split, prepare  # noqa: E402
from diffrepro.datasets import dataset_of  # noqa: E402
from diffrepro.performance import (Performance, autocast, compile_module, configure_backends,  # noqa: E402
                                   place_batch, place_module, resolve_device)
from diffrepro.scalings import get_scaling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "workflow" / "config.yaml"
REPLICATIONS = ROOT / "replications"
COLUMNS = ("part", "item", "setting", "quantity", "value", "unit", "reference", "note")
NETWORKS = {  # label: (paper, experiment, input scaling) whose paper-scale spec builds the network
    "course FMNIST UNet": ("tfree_fastai", "cosine_t", "centered"),
    "DDPM CIFAR-10 UNet": ("ddpm_2020", "eps_simple", None),
    "EDM CIFAR-10 UNet": ("karras_edm_2022", "edm", "symmetric"),
}
SETTINGS = {  # the rows of part (a): all off, each one on, all on
    "all off": {},
    "bf16": {"bf16": True},
    "tf32": {"tf32": True},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "all on": {"bf16": True, "tf32": True, "channels_last": True, "compile": True},
}
COURSE_FID = "3.29 (lesson 22); 3.10 (repeat)"
FULL = {"caps": {"throughput": 270, "train": 120, "classifier_wait": 120},
        "matmul_n": 8192, "matmul_repeats": 5, "train_steps": 25, "forwards": 20}
TINY = {"caps": {"throughput": 60, "train": 60, "classifier_wait": 60},
        "matmul_n": 128, "matmul_repeats": 2, "train_steps": 2, "forwards": 2,
        "unet": {"channels": [8, 16], "blocks_per_level": 1, "attention_levels": [1], "groups": 4, "dropout": 0.0},
        "batch": 8, "sample_batch": 8, "train": {"steps": 3, "batch_size": 16, "warmup": 1, "checkpoint_every": 3},
        "train_limit": 512, "n_samples": 64, "sampler_steps": 4, "n_reference": 512,
        "classifier": {"epochs": 0.5, "width": 8, "batch_size": 64, "lr": 5.0e-3, "train_limit": 512},
        "kid_subset_size": 32, "kid_subsets": 10}


class GpuCheckPlan(Plan):
    """The workflow's Plan without its Inception-weights check: this check builds CIFAR-10 networks
    for throughput only and never scores with Inception, so a bare host needs no weights file."""

    def _inception_weights(self):
        return None


def paper_plan() -> Plan:
    config = load_config({**yaml.safe_load(CONFIG.read_text()), "scale": "paper"})
    return GpuCheckPlan(config, load_replications(REPLICATIONS))


def row(part, item, setting, quantity, value, unit="", reference="", note="") -> dict:
    return dict(zip(COLUMNS, (part, item, setting, quantity, value, unit, reference, note)))


# ------------------------------------------------------------------ (a) throughput

def network_spec(plan: Plan, label: str, tiny: bool) -> dict:
    """The training spec of a network at scale paper (tiny: its widths shrunk, its data set kept)."""
    paper, experiment, scaling = NETWORKS[label]
    scaling = scaling or plan.experiment(paper, experiment)["input_scalings"]
    if isinstance(scaling, (list, dict)):
        scaling = (scaling if isinstance(scaling, list) else scaling["paper"])[0]
    spec = plan.training_spec(paper, experiment, scaling)
    if tiny:
        spec["unet"] = {**spec["unet"], **TINY["unet"]}
    return spec


def sampling_batch(plan: Plan, label: str, tiny: bool) -> int:
    paper, experiment, _ = NETWORKS[label]
    return TINY["sample_batch"] if tiny else plan.sampling(paper, experiment)["batch_size"]


def random_inputs(batch: int, spec: dict, performance: Performance, device: torch.device) -> tuple:
    """(x, t, target) for one step, drawn on the CPU from a fixed seed like the workflow's noise."""
    generator = torch.Generator().manual_seed(1)
    shape = (batch, dataset_of(spec).channels, spec["resolution"], spec["resolution"])
    x, target = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    t = torch.rand(batch, generator=generator) * 999
    return place_batch(x, performance, device), t.to(device), place_batch(target, performance, device)


def compiled(module: torch.nn.Module, performance: Performance, tiny: bool) -> torch.nn.Module:
    """The library's compile_module; --tiny uses the eager backend (dynamo without code generation)."""
    if tiny and performance.compile:
        module.compile(backend="eager")
        return module
    return compile_module(module, performance)


def count_flops(spec: dict, batch: int) -> float:
    """FLOPs per image of one forward + backward (float32, CPU, batch 2: the count is per image)."""
    net = build_network(spec)
    x, t, target = random_inputs(2, spec, Performance(device="cpu"), torch.device("cpu"))
    return training_flops(net, x, t, target, Performance(device="cpu"), torch.device("cpu")) / 2


def timed_count(call, most: int, device: torch.device, seconds: float = 2.0) -> int:
    """How many calls to time: about `seconds` worth (at least 2, at most `most`), judged from one
    call after a warm-up call (which compiles and autotunes). EDM's fp32 training step of 512 is
    ~1 s on an H200, the course UNet's bf16 step ~10 ms: a fixed count would waste minutes."""
    call()
    one = best_seconds(call, 1, device)
    return max(2, min(most, int(seconds / max(one, 1e-9))))


def measure_setting(spec: dict, flags: dict, size: dict, device: torch.device, tiny: bool) -> dict:
    """Training images/s and sampling NFE/s of a fresh network under one setting."""
    performance = Performance(device=device.type, **flags)
    configure_backends(performance, device)
    torch.manual_seed(0)
    net = compiled(place_module(build_network(spec), performance, device).train(), performance, tiny)
    batch = TINY["batch"] if tiny else spec["train"]["batch_size"]
    x, t, target = random_inputs(batch, spec, performance, device)
    train_steps = training_step(net, net, x, t, target, performance, device)
    n = timed_count(train_steps, size["train_steps"], device)
    images_per_s = n * batch / best_seconds(lambda: [train_steps() for _ in range(n)], 1, device)
    net.eval()
    x, t, _ = random_inputs(size["sample_batch"], spec, performance, device)

    def forward():
        with torch.inference_mode(), autocast(performance, device):
            net(x, t)

    n = timed_count(forward, size["forwards"], device)
    nfe_per_s = n / best_seconds(lambda: [forward() for _ in range(n)], 1, device)
    return {"train_batch": batch, "train_images_per_s": images_per_s, "nfe_per_s": nfe_per_s}


def throughput(plan: Plan, size: dict, device: torch.device, tiny: bool) -> tuple[list, dict]:
    """Part (a): rows, and the measured images/s of each setting of the course UNet (for part b)."""
    deadline = time.perf_counter() + size["caps"]["throughput"]
    peak = matmul_peak(size["matmul_n"], torch.bfloat16, size["matmul_repeats"], device)
    rows = [row("a", "matmul", f"bf16 n={size['matmul_n']}", "peak", peak / 1e12, "TFLOP/s")]
    course = {}
    for label in NETWORKS:
        spec = network_spec(plan, label, tiny)
        flops = count_flops(spec, 2)
        params = sum(p.numel() for p in build_network(spec).parameters())
        rows += [row("a", label, "-", "parameters", params / 1e6, "M"),
                 row("a", label, "-", "train FLOP per image (fwd+bwd)", flops / 1e9, "GFLOP")]
        sample_batch = sampling_batch(plan, label, tiny)
        for setting, flags in SETTINGS.items():
            if time.perf_counter() > deadline:
                rows.append(row("a", label, setting, "train images/s", "", "", "",
                                f"skipped: part (a) cap of {size['caps']['throughput']} s reached"))
                continue
            got = measure_setting(spec, flags, {**size, "sample_batch": sample_batch}, device, tiny)
            if label == "course FMNIST UNet":
                course[setting] = got["train_images_per_s"]
            rows += [row("a", label, setting, f"train images/s (batch {got['train_batch']})",
                         got["train_images_per_s"], "images/s"),
                     row("a", label, setting, "train % of bf16 matmul peak",
                         100 * flops * got["train_images_per_s"] / peak, "%"),
                     row("a", label, setting, f"sampling NFE/s (batch {sample_batch})", got["nfe_per_s"], "NFE/s")]
    return rows, course


# ------------------------------------------------------------------ (b) the course's cosine model

def data_file(data: Path, out: Path) -> Path:
    """The workflow's npz: `data` itself, or built from a folder with the four idx .gz files."""
    if data.is_file():
        return data
    npz = out / "fashion_mnist.npz"
    if not npz.exists():
        prepare(npz, data_root=data)
    return npz


def classifier_settings(plan: Plan, tiny: bool, epochs: float) -> dict:
    """scales.paper.classifier (width 32, batch 256, lr 5e-3) with `epochs` (default 3, not 20:
    train_classifier runs on the CPU, measured 103 images/s per thread here for width 32, so 20
    epochs of 60k would take ~20 min even on 14 host cores; 3 is the quick scale's setting)."""
    return dict(TINY["classifier"]) if tiny else {**plan.scale_cfg["classifier"], "epochs": epochs}


def start_classifier(npz: Path, cfg: dict, out: Path, threads: int) -> subprocess.Popen:
    """Train the FID classifier in a child process (its code runs on the CPU) while the GPU trains."""
    job = {"npz": str(npz), "cfg": cfg, "out": str(out / "classifier.pt"), "threads": threads}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "workflow"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, __file__, "--classifier-job", json.dumps(job)], env=env)


def classifier_job(job: dict) -> None:
    """The child process: diffrepro's train_classifier, as the train_classifier stage calls it."""
    from diffrepro.models.classifier import save_classifier, train_classifier

    cfg = job["cfg"]
    train_x, train_y = load_split(job["npz"], "train", 32, cfg.get("train_limit"))
    test_x, test_y = load_split(job["npz"], "test", 32)
    to_uint8 = lambda images: np.round(images * 255).astype(np.uint8)  # the stage's quantisation
    start = time.perf_counter()
    model, accuracy = train_classifier(to_uint8(train_x), train_y, to_uint8(test_x), test_y, epochs=cfg["epochs"],
                                       batch_size=cfg["batch_size"], lr=cfg["lr"], width=cfg["width"], seed=0,
                                       threads=job["threads"], augment=False, progress=False)
    meta = {"test_accuracy": accuracy, "train_seconds": time.perf_counter() - start, **cfg}
    save_classifier(model, job["out"], meta)


def cosine_specs(plan: Plan, size: dict, tiny: bool, device: str) -> tuple[dict, dict]:
    """(training spec, sample spec) of tfree_fastai/cosine_t, DDIM eta 1 at 100 steps, seed 0."""
    sample_spec = plan.sample_spec("tfree_fastai", "cosine_t", "centered", "ddim_eta1", 100, 0)
    spec = sample_spec["training"]
    if tiny:
        spec["unet"] = {**spec["unet"], **TINY["unet"]}
        spec["train"] = {**spec["train"], **TINY["train"]}
        spec["train_limit"] = TINY["train_limit"]
        sample_spec.update(n_samples=TINY["n_samples"], batch_size=TINY["sample_batch"])
        sample_spec["sampler"]["steps"] = TINY["sampler_steps"]
    for s in (spec, sample_spec):
        s["performance"] = {**s.get("performance", {}), "device": device}
    return spec, sample_spec


def steps_within_cap(spec: dict, images_per_s: float | None, cap: float) -> int:
    """The spec's steps, or fewer when part (a)'s measured rate says they would exceed the cap."""
    steps = spec["train"]["steps"]
    if not images_per_s:
        return steps
    return min(steps, int(cap * images_per_s / spec["train"]["batch_size"]))


def train_cosine(spec: dict, npz: Path) -> tuple[dict, float]:
    """(model file dict, seconds): the train stage's steps (diffrepro.stages.train), no files."""
    from diffrepro.training import seed_everything, train

    images, _ = load_split(npz, "train", spec["resolution"], spec["train_limit"])
    data = torch.from_numpy(get_scaling(spec["input_scaling"]).to_model(images))
    seed_everything(spec["train"]["seed"])
    _, schedule, denoiser = build_model(spec)
    start = time.perf_counter()
    state, _ = train(denoiser, schedule, build_loss(spec), data, spec["train"], progress=False,
                     performance=Performance.of_spec(spec), describe="gpu_check cosine_t")
    return {"spec": spec, "state_dict": state}, time.perf_counter() - start


def wait_for(process: subprocess.Popen, cap: float) -> None:
    try:
        process.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        process.kill()
        raise SystemExit(f"error: the classifier was not trained within the {cap} s cap after sampling") from None
    if process.returncode != 0:
        raise SystemExit(f"error: the classifier job failed (exit {process.returncode})")


def score(images: np.ndarray, npz: Path, out: Path, size: dict, plan: Plan, tiny: bool, device) -> list:
    """compute_metrics' rows against the test split, with the freshly trained classifier's features."""
    from diffrepro.features import FMNIST_CLASSIFIER, Extractor
    from diffrepro.metrics import compute_metrics, write_reference

    extractor = Extractor(FMNIST_CLASSIFIER, out / "classifier.pt")
    reference, _ = load_split(npz, "test", 32, TINY["n_reference"] if tiny else None)
    write_reference(reference, extractor, out / "reference.npz", device=device)
    fid = plan.scale_cfg["fid"]
    return compute_metrics(images, out / "reference.npz", extractor, device=device,
                           kid_subset_size=TINY["kid_subset_size"] if tiny else fid["kid_subset_size"],
                           kid_subsets=TINY["kid_subsets"] if tiny else fid["kid_subsets"])


def cosine_fid(plan: Plan, npz: Path, out: Path, size: dict, course_rates: dict, device: torch.device,
               tiny: bool, classifier: subprocess.Popen, cfg: dict) -> list:
    """Part (b): train cosine_t, sample 2048 with DDIM eta 1 at 100 steps, score; rows."""
    from diffrepro.models.classifier import load_classifier
    from diffrepro.sampling import draw_samples

    spec, sample_spec = cosine_specs(plan, size, tiny, device.type)
    paper_steps = spec["train"]["steps"]
    # the workflow's paper setting is bf16 + TF32 + channels_last, no compile: its nearest row of (a)
    steps = steps_within_cap(spec, course_rates.get("all on") or course_rates.get("bf16"), size["caps"]["train"])
    spec["train"] = {**spec["train"], "steps": steps, "checkpoint_every": steps}
    model_file, train_seconds = train_cosine(spec, npz)
    images, info = draw_samples(model_file, sample_spec, progress=False)
    wait_for(classifier, size["caps"]["classifier_wait"])
    _, meta = load_classifier(out / "classifier.pt")
    item, name = "cosine_t (course lesson 22)", "tfree_fastai/cosine_t"
    rows = [row("b", item, name, "train steps", steps, "steps", f"{paper_steps} (scales.paper.train)",
                "" if steps == paper_steps else "cut to fit the part (b) cap"),
            row("b", item, name, "train images/s", steps * spec["train"]["batch_size"] / train_seconds, "images/s"),
            row("b", item, name, "train seconds", train_seconds, "s"),
            row("b", item, "ddim eta 1", f"sampling seconds ({sample_spec['n_samples']} x {info['nfe']} NFE)",
                info["seconds"], "s"),
            row("b", "FID classifier", f"width {cfg['width']}, {cfg['epochs']} epochs", "test accuracy",
                100 * meta["test_accuracy"], "%", "", f"trained on the CPU in {meta['train_seconds']:.0f} s")]
    for r in score(images, npz, out, size, plan, tiny, device):
        rows.append(row("b", item, f"ddim eta 1, {sample_spec['sampler']['steps']} steps, {r['n_samples']} samples",
                        f"{r['metric'].upper()} ({r['library']})", r["value"], "",
                        COURSE_FID if r["metric"] == "fid" else "", "workflow classifier features vs test split"))
    return rows


# ------------------------------------------------------------------ (c) the table

def formatted(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def report(rows: list, out: Path) -> Path:
    path = out / "gpu_check.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print_table([(r["part"], r["item"], r["setting"], r["quantity"], formatted(r["value"]), r["unit"],
                  r["reference"], r["note"]) for r in rows], header=COLUMNS)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four Fashion-MNIST idx .gz files, or the workflow's npz")
    parser.add_argument("--out", type=Path, required=False, default=Path("gpu_check_out"))
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU in well under a minute (the test)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads of this process; the classifier job gets all but two (at least one)")
    parser.add_argument("--classifier-epochs", type=float, default=3.0,
                        help="FID classifier epochs (paper scale: 20; see classifier_settings)")
    parser.add_argument("--classifier-job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.classifier_job:
        return classifier_job(json.loads(args.classifier_job))

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    size = TINY if args.tiny else FULL
    plan = paper_plan()
    npz = data_file(args.data, args.out)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}{'; --tiny sizes (not a measurement)' if args.tiny else ''}",
          flush=True)
    # the classifier trains on the CPU from the start, while parts (a) and (b) keep the GPU busy
    cfg = classifier_settings(plan, args.tiny, args.classifier_epochs)
    classifier = start_classifier(npz, cfg, args.out, max(1, args.threads - 2))
    rows, course_rates = throughput(plan, size, device, args.tiny)
    rows += cosine_fid(plan, npz, args.out, size, course_rates, device, args.tiny, classifier, cfg)
    rows.append(row("c", "whole check", "-", "wall seconds", time.perf_counter() - start, "s"))
    path = report(rows, args.out)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
