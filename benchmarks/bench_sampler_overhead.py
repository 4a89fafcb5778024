"""Per-step time our samplers and diffusers' schedulers spend OUTSIDE the network.

Not a test. Batch 256 of 1x32x32 float32 images, the quick-scale UNet
(channels (32, 64, 128), one block per level, attention at level 2), one CPU thread.

Method: (1) time one UNet forward (median of a few); (2) run every sampler with a zero-cost
network stub (it returns a preallocated tensor), so all the time measured is bookkeeping outside
the network: for us the sampler plus the VP eps-wrapper that turns the network into a denoiser,
for diffusers the pipeline loop (scale_model_input, step); (3) as a cross-check, run one pair
with the real UNet and take (total time) - (time inside network calls).
Overhead fraction of a step = overhead / (overhead + NFE per step x forward time).

    PYTHONPATH=workflow .venv/bin/python benchmarks/bench_sampler_overhead.py
"""

import argparse
import inspect
import statistics
import time

import torch

from diffrepro import samplers as M
from diffrepro import schedules as S
from diffrepro.models.unet import UNet

SHAPE = (256, 1, 32, 32)


class TimedNetwork:
    """Calls the network and accumulates the seconds spent inside it."""

    def __init__(self, net):
        self.net, self.seconds, self.calls = net, 0.0, 0

    def __call__(self, x, t):
        start = time.perf_counter()
        out = self.net(x, t)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def zero_cost_network():
    eps = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * 0.1
    return lambda x, t: eps


def vp_eps_denoiser(network):
    """An eps-predicting VP network as a sigma-frame denoiser: D = x - sigma eps(x / sqrt(1 + sigma^2))."""
    def denoise(x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        return x - s * network(x / (1 + s ** 2).sqrt(), sigma.log() / 4)
    return denoise


OURS = {  # row name -> (sampler, options)
    "ddpm_ancestral": ("ddpm_ancestral", {"variance": "large"}),
    "ddim": ("ddim", {"eta": 0.0}),
    "euler": ("euler", {}),
    "euler_ancestral": ("euler_ancestral", {"eta": 1.0}),
    "heun": ("heun", {}),
    "lms": ("lms", {"order": 4}),
    "dpmpp_2m": ("dpmpp_2m", {}),
    "tfree_ddim": ("tfree_ddim", {"eta": 1.0}),
}


def diffusers_schedulers():
    import diffusers
    return {
        "ddpm_ancestral": (lambda: diffusers.DDPMScheduler(variance_type="fixed_large", clip_sample=False), {}),
        "ddim": (lambda: diffusers.DDIMScheduler(clip_sample=False), {"eta": 0.0}),
        "euler": (diffusers.EulerDiscreteScheduler, {}),
        "euler_ancestral": (diffusers.EulerAncestralDiscreteScheduler, {}),
        "heun": (diffusers.HeunDiscreteScheduler, {}),
        "lms": (diffusers.LMSDiscreteScheduler, {"order": 4}),
        "dpmpp_2m": (lambda: diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2), {}),
    }


def run_ours(name, network, steps):
    sampler, options = OURS[name]
    sigmas = S.SCHEDULES["linear_beta"]().sampling_sigmas(steps)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)) * sigmas[0].item()
    denoiser = M.CountedDenoiser(vp_eps_denoiser(network))
    start = time.perf_counter()
    with torch.inference_mode():
        M.SAMPLERS[sampler](denoiser, x, sigmas, generator=torch.Generator().manual_seed(2), **options)
    return time.perf_counter() - start, denoiser.calls


def run_diffusers(make, step_options, network, steps):
    scheduler = make()
    scheduler.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)) * scheduler.init_noise_sigma
    if "generator" in inspect.signature(scheduler.step).parameters:  # the stochastic ones
        step_options = {**step_options, "generator": torch.Generator().manual_seed(2)}
    start = time.perf_counter()
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            out = network(x_in, t.float().expand(SHAPE[0]))
            x = scheduler.step(out, t, x, **step_options).prev_sample
    return time.perf_counter() - start, len(scheduler.timesteps)


def best_of(repeats, run):
    return min((run() for _ in range(repeats)), key=lambda r: r[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="steps of each zero-cost run")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many zero-cost runs")
    parser.add_argument("--forwards", type=int, default=3, help="UNet forwards timed (first is warm-up)")
    parser.add_argument("--network-steps", type=int, default=2,
                        help="steps of the with-UNet cross-check (0 to skip)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net = UNet(in_channels=1, channels=(32, 64, 128), blocks_per_level=1, attention_levels=(2,)).eval()
    x, t = torch.randn(SHAPE), torch.rand(SHAPE[0])
    forward_times = []
    with torch.inference_mode():
        for _ in range(args.forwards):
            start = time.perf_counter()
            net(x, t)
            forward_times.append(time.perf_counter() - start)
    forward = statistics.median(forward_times[1:] or forward_times)
    print(f"UNet forward, batch {SHAPE[0]}, {args.threads} thread(s): {forward * 1e3:.0f} ms "
          f"(runs: {', '.join(f'{s * 1e3:.0f}' for s in forward_times)} ms)\n")

    try:
        theirs = diffusers_schedulers()
    except ImportError:
        theirs = {}
    stub = zero_cost_network()
    header = f"{'sampler':16} {'NFE/step':>8} {'ours ms/step':>13} {'diffusers ms/step':>18} " \
             f"{'ours % of step':>15} {'diffusers % of step':>20}"
    print(f"zero-cost network, {args.steps} steps, best of {args.repeats}")
    print(header)
    print("-" * len(header))
    for name in OURS:
        seconds, nfe = best_of(args.repeats, lambda: run_ours(name, stub, args.steps))
        per_step, nfe_per_step = seconds / args.steps, nfe / args.steps
        ours_pct = 100 * per_step / (per_step + nfe_per_step * forward)
        their_ms = their_pct = "-"
        if name in theirs:
            make, options = theirs[name]
            seconds, calls = best_of(args.repeats, lambda: run_diffusers(make, options, stub, args.steps))
            their_step = seconds / args.steps
            their_ms = f"{their_step * 1e3:.2f}"
            their_pct = f"{100 * their_step / (their_step + calls / args.steps * forward):.3f}"
        print(f"{name:16} {nfe_per_step:8.2f} {per_step * 1e3:13.2f} {their_ms:>18} {ours_pct:15.3f} {their_pct:>20}")

    if args.network_steps and "euler" in theirs:
        print(f"\ncross-check with the UNet, euler, {args.network_steps} steps: (total - inside network) per step")
        for label, run in (("ours", lambda net_: run_ours("euler", net_, args.network_steps)),
                           ("diffusers", lambda net_: run_diffusers(*theirs["euler"], net_, args.network_steps))):
            timed = TimedNetwork(net)
            seconds, _ = run(timed)
            outside = (seconds - timed.seconds) / args.network_steps
            share = 100 * outside / (seconds / args.network_steps)
            print(f"  {label:10} total {seconds:.2f} s, network {timed.seconds:.2f} s ({timed.calls} calls), "
                  f"outside {outside * 1e3:.1f} ms/step = {share:.3f}% of a step")


if __name__ == "__main__":
    main()
