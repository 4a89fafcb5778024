"""The GPU code path (bf16 autocast, channels_last, device placement) exercised on the CPU, so it
cannot rot on machines without a GPU; and the performance settings' way into the specs."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffrepro.build import build_loss, build_model
from diffrepro.config import load_config
from diffrepro.plan import Plan
from diffrepro.schema import ConfigError
from diffrepro.performance import DeviceUnavailable, Performance, resolve_device
from diffrepro.samplers import _noise
from diffrepro.sampling import draw_samples
from diffrepro.training import seed_everything, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())
DDPM = yaml.safe_load((ROOT / "replications" / "ddpm_2020.yaml").read_text())
GPU_PATH = Performance(device="cpu", bf16=True, channels_last=True, compile=False)


def plan(scale="smoke", **performance) -> Plan:
    config = copy.deepcopy(CONFIG)
    config["scale"] = scale
    # the paper scale scores CIFAR-10 with Inception: the Plan wants a weights file, any file will do
    config["inception_weights"] = __file__ if scale == "paper" else None
    config["scales"][scale]["performance"] = {**config["scales"][scale].get("performance", {}), **performance}
    load_config(config)
    return Plan(config, {"ddpm_2020": copy.deepcopy(DDPM)})


def tiny_spec() -> dict:
    spec = plan().training_spec("ddpm_2020", "eps_simple", "symmetric")
    spec["unet"].update(channels=[8, 16], attention_levels=[1])  # attention runs under autocast too
    spec["train"] = {"steps": 4, "batch_size": 8, "lr": 2e-3, "warmup": 2, "grad_clip": 1.0,
                     "ema_halflife_images": 16, "checkpoint_every": 4, "seed": 0}
    return spec


def data() -> torch.Tensor:
    return torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1


def run_training(performance, loss_spy=None):
    spec = tiny_spec()
    seed_everything(0)
    _, schedule, denoiser = build_model(spec)
    loss = build_loss(spec)
    if loss_spy is not None:
        loss = loss_spy(loss)
    state, log = train(denoiser, schedule, loss, data(), spec["train"], progress=False, performance=performance)
    return spec, denoiser, state, log


@pytest.fixture(scope="module")
def fp32_run():
    # module fixtures start before the autouse one-thread fixture: pin the thread count here too,
    # or the comparison runs differ in float summation order
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_training(None)
    finally:
        torch.set_num_threads(threads)


def test_training_with_bf16_and_channels_last_runs_them_and_ends_finite(fp32_run):
    seen = []

    def spy(loss):
        def wrapped(denoiser, x0, sigma, noise):
            conv = denoiser.net.conv_out.weight  # [1, 8, 3, 3]: NHWC and NCHW strides differ
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                         conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()))
            return loss(denoiser, x0, sigma, noise)
        return wrapped

    _, denoiser, state, log = run_training(GPU_PATH, spy)
    assert seen and all(s == (True, torch.bfloat16, True) for s in seen), seen[:1]
    losses = [row["loss"] for row in log]
    assert len(losses) == 4 and np.isfinite(losses).all()
    reference = [row["loss"] for row in fp32_run[3]]
    # bf16 changes the arithmetic (so autocast really ran) but not the training
    assert losses != reference
    np.testing.assert_allclose(losses, reference, rtol=0.05)
    # what the files get, and the module handed back, are CPU tensors in the standard layout
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in state.values())
    assert all(p.is_contiguous() for p in denoiser.parameters())
    assert any(not torch.equal(state[k], fp32_run[2][k]) for k in state)


def test_default_training_is_float32_contiguous_and_unchanged_by_an_explicit_cpu(fp32_run):
    seen = []

    def spy(loss):
        def wrapped(denoiser, x0, sigma, noise):
            seen.append((torch.is_autocast_enabled("cpu"), x0.is_contiguous()))
            return loss(denoiser, x0, sigma, noise)
        return wrapped

    _, _, state, log = run_training(Performance(device="cpu"), spy)
    assert set(seen) == {(False, True)}
    assert [row["loss"] for row in log] == [row["loss"] for row in fp32_run[3]]
    assert all(torch.equal(state[k], fp32_run[2][k]) for k in state)


def sample_spec(training_spec, **performance) -> dict:
    spec = {"training": training_spec, "seed": 0, "n_samples": 6, "batch_size": 4,
            "sampler": {"label": "ddpm_large", "name": "ddpm_ancestral", "grid": {}, "steps": 3,
                        "options": {"variance": "large", "clip_x0": True}}}
    return {**spec, "performance": performance} if performance else spec


def test_sampling_with_channels_last_or_bf16_matches_float32(fp32_run):
    training_spec, _, state, _ = fp32_run
    model = {"spec": training_spec, "state_dict": state}
    reference, _ = draw_samples(model, sample_spec(training_spec), progress=False)
    on_cpu, _ = draw_samples(model, sample_spec(training_spec, device="cpu"), progress=False)
    nhwc, _ = draw_samples(model, sample_spec(training_spec, channels_last=True), progress=False)
    bf16, _ = draw_samples(model, sample_spec(training_spec, bf16=True, channels_last=True), progress=False)
    assert np.array_equal(on_cpu, reference)
    assert nhwc.flags.c_contiguous and nhwc.shape == reference.shape
    np.testing.assert_allclose(nhwc, reference, atol=1e-4)
    # the same noise (drawn on the CPU) through a bf16 network: close, but not the float32 images
    assert not np.array_equal(bf16, reference)
    assert np.abs(bf16 - reference).mean() < 0.02


def test_sampler_noise_is_drawn_by_the_cpu_generator_wherever_the_images_live():
    # "meta" stands in for a GPU: the noise must be the CPU generator's draw, moved to x's device,
    # so a seed's noise does not depend on where the network runs
    x = torch.empty(2, 1, 4, 4, device="meta")
    generator, reference = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    noise = _noise(x, generator)
    assert noise.device.type == "meta" and noise.shape == x.shape
    torch.randn(x.shape, generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())
    assert torch.equal(_noise(torch.empty(2, 1, 4, 4), generator), torch.randn(x.shape, generator=reference))


def test_only_settings_that_differ_from_the_defaults_enter_the_specs():
    defaults = plan().training_spec("ddpm_2020", "eps_simple", "symmetric")
    assert "performance" not in defaults
    assert plan(bf16=False, device="auto").training_spec("ddpm_2020", "eps_simple", "symmetric") == defaults
    tuned = plan(bf16=True, channels_last=True)
    assert tuned.training_spec("ddpm_2020", "eps_simple", "symmetric")["performance"] == {
        "bf16": True, "channels_last": True}
    assert tuned.sample_spec("ddpm_2020", "eps_simple", "symmetric", "ddpm_large", 10, 0)["performance"] == {
        "bf16": True, "channels_last": True}
    assert Performance.of_spec(tuned.training_spec("ddpm_2020", "eps_simple", "symmetric")) == Performance(
        bf16=True, channels_last=True)
    paper = plan("paper").training_spec("ddpm_2020", "eps_simple", "symmetric")
    assert paper["performance"] == {"bf16": True, "tf32": True, "channels_last": True}


def test_bad_performance_setting_names_key():
    config = copy.deepcopy(CONFIG)
    config["scales"]["quick"]["performance"]["device"] = "tpu"
    with pytest.raises(ConfigError, match=r"scales.quick.performance.device: 'tpu' is not allowed"):
        load_config(config)


def test_device_auto_and_a_missing_gpu():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="no CUDA device"):
            resolve_device("cuda")
