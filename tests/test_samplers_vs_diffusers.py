"""Our samplers against diffusers' schedulers on the same analytic Gaussian denoiser.

diffusers is a test-only dependency (pinned 0.42.1); the module is skipped without it.

How the conventions map (everything below is checked by the assertions):
  * Grids. Both sides run on the *same* sigma values: we take diffusers' own float32 sigmas
    (or sigma_t = sqrt((1 - abar_t) / abar_t) from its float32 alphas_cumprod) as float64 and
    give them to our sampler. Separately we check that our grid builders produce those grids:
    EDM's rho-ramp = diffusers' `use_karras_sigmas`, our 'uniform' sub-sequence = DDIM
    `timestep_spacing='trailing'` (0-based t = tau - 1), ending in sigma = 0
    (`final_sigmas_type='zero'`, `set_alpha_to_one=True`).
  * Inputs. Euler/Heun/LMS keep a sigma-frame sample (= ours) and feed the network
    `scale_model_input(x) = x / sqrt(1 + sigma^2)`, the VP-frame image; DDIM, DDPM and DPM-Solver
    keep the VP-frame sample x_vp itself (ours is x = x_vp sqrt(1 + sigma^2)). So the network
    always sees x_vp; our analytic network undoes the same scale to call D(x, sigma).
  * Outputs. 'epsilon' models return (x - D) / sigma, 'sample' models return D.
  * The model's sigma for call j is `scheduler.sigmas[j]` (Heun's list repeats the inner levels,
    one entry per evaluation), or abar[t] for DDIM/DDPM; diffusers' integer/fractional timesteps
    only feed the network, which our analytic one does not need.
  * Heun: diffusers interleaves first- and second-order calls; its state after our step i is
    its output after call 2i + 1 (and after the final Euler call for the last step).
  * LMS: diffusers integrates the same Lagrange basis with scipy's quad, we use Gauss-Legendre
    (exact for these polynomials); DPM-Solver++(2M): diffusers works in the VP frame with
    lambda = ln(alpha / sigma_vp) = -ln sigma, which is our sigma-frame update divided by alpha;
    both take first-order steps at the start and onto sigma = 0.
  * Precision (relative to max(1, |x|); |x| starts near sigma_max). diffusers keeps its schedule
    constants in float32; `in_float64` holds the same values in float64, so DDIM, DDPM, Heun
    and LMS (whose `step` follows the sample's dtype) run in float64 and must agree to 1e-12
    (1e-10 for LMS, whose coefficients come from scipy's adaptive quad). Left in float32,
    DDPM's beta = 1 - abar_t / abar_prev cancels down to ~4 digits near t = 1 on the full
    chain. Euler and DPM-Solver cast the sample to float32 inside `step`: 1e-5 there.
  * Stochastic DDIM/DDPM draw their noise in the same order from one torch.Generator as ours.
    diffusers' DDPM adds noise of variance clamp(beta_tilde, 1e-20) even on the step onto
    abar = 1 (we add none there): 1e-10, inside tolerance. With variance 'fixed_large' that last
    noise would be sqrt(1 - abar_tau1), so that case runs on the full 1000-step chain, where the
    last step is t = 0 and both add nothing.
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffrepro import samplers as M  # noqa: E402
from diffrepro import schedules as S  # noqa: E402

F64 = torch.float64
MU = torch.tensor([[0.4, -0.3, 0.1]], dtype=F64)
SD = torch.tensor([[0.5, 0.8, 0.3]], dtype=F64)
STEPS = 12


def denoiser(x, sigma):
    s2 = sigma.reshape(-1, 1) ** 2
    return (SD ** 2 * x + s2 * MU) / (SD ** 2 + s2)


def network(x_vp, sigma, prediction):
    """The analytic model as diffusers calls it: VP-frame input, eps or x0 output."""
    x = x_vp * (sigma ** 2 + 1) ** 0.5  # undo the scale diffusers applied, from the same sigma value
    sigma = float(sigma)
    denoised = denoiser(x, torch.full((x.shape[0],), sigma, dtype=F64))
    return denoised if prediction == "sample" else (x - denoised) / sigma


def noise(n=8, seed=0):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


def our_states(name, x, sigmas, **options):
    states = []
    out = M.SAMPLERS[name](denoiser, x, sigmas, callback=lambda i, s, x_, d: states.append(x_), **options)
    assert torch.equal(out, states[-1])
    return states


def assert_trajectories_match(ours, theirs, rtol):
    """Every step's state agrees to rtol relative to max(1, |x|)."""
    assert len(ours) == len(theirs)
    errors = [(a - b).abs().max().item() / max(1.0, b.abs().max().item()) for a, b in zip(ours, theirs)]
    print(f"\nlargest relative difference over {len(errors)} steps: {max(errors):.1e}")
    assert max(errors) <= rtol, errors


# ---------------------------------------------------------------- grids

def test_edm_grid_is_diffusers_karras_grid():
    scheduler = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True, sigma_min=0.002, sigma_max=80.0)
    scheduler.set_timesteps(STEPS)
    assert torch.allclose(scheduler.sigmas.double(), S.edm_sigmas(STEPS, 0.002, 80.0, 7.0), rtol=1e-6, atol=0)


def test_uniform_grid_is_ddim_trailing_and_linear_beta_matches():
    scheduler = diffusers.DDIMScheduler(timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    assert torch.equal(scheduler.timesteps + 1, S.uniform_timesteps(1000, 10).flip(0))
    assert torch.allclose(scheduler.alphas_cumprod.double(), S.linear_beta_alpha_bar(1000), rtol=2e-5, atol=0)


# ---------------------------------------------------------------- VP-frame schedulers

def in_float64(scheduler):
    """Hold diffusers' schedule constants (the same float32-rounded values) in float64, so that its
    own formulas run in float64 where its `step` does not upcast to float32 by itself."""
    for name in ("alphas_cumprod", "sigmas", "one", "final_alpha_cumprod"):
        if torch.is_tensor(getattr(scheduler, name, None)):
            setattr(scheduler, name, getattr(scheduler, name).double())
    return scheduler


def sigma_of(alpha_bar32):
    return ((1 - alpha_bar32.double()) / alpha_bar32.double()).sqrt()


def run_vp_scheduler(scheduler, x_vp, prediction, **step_kwargs):
    """diffusers' loop; returns its states mapped to the sigma-frame and the sigma grid it used."""
    abar = scheduler.alphas_cumprod
    sigmas = [sigma_of(abar[t]) for t in scheduler.timesteps] + [torch.zeros((), dtype=F64)]
    states = []
    for j, t in enumerate(scheduler.timesteps):
        x_vp = scheduler.step(network(x_vp, sigmas[j], prediction), t, x_vp, **step_kwargs).prev_sample
        states.append(x_vp * (1 + sigmas[j + 1] ** 2).sqrt())
    return states, torch.stack(sigmas)


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_ddim_eta0(prediction):
    scheduler = diffusers.DDIMScheduler(timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True,
                                        prediction_type=prediction)
    scheduler.set_timesteps(50)  # T % steps == 0: DDIM steps back by T // steps, trailing by T / steps
    x_vp = noise()
    theirs, sigmas = run_vp_scheduler(in_float64(scheduler), x_vp, prediction, eta=0.0)
    ours = our_states("ddim", x_vp * (1 + sigmas[0] ** 2).sqrt(), sigmas, eta=0.0)
    assert_trajectories_match(ours, theirs, rtol=1e-12)


def test_ddim_eta1_same_noise():
    scheduler = diffusers.DDIMScheduler(timestep_spacing="trailing", clip_sample=False)
    scheduler.set_timesteps(20)
    x_vp = noise()
    theirs, sigmas = run_vp_scheduler(in_float64(scheduler), x_vp, "epsilon", eta=1.0,
                                      generator=torch.Generator().manual_seed(7))
    ours = our_states("ddim", x_vp * (1 + sigmas[0] ** 2).sqrt(), sigmas, eta=1.0,
                      generator=torch.Generator().manual_seed(7))
    assert_trajectories_match(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("use_clipped_model_output", [False, True])
def test_ddim_clipped_x0_variants(use_clipped_model_output):
    """diffusers' clip_sample keeps the network's eps next to the clipped x0 unless
    use_clipped_model_output re-derives it: our eps_from_clipped_x0 False / True."""
    scheduler = diffusers.DDIMScheduler(timestep_spacing="trailing", clip_sample=True, clip_sample_range=0.3)
    scheduler.set_timesteps(20)
    x_vp = noise()
    theirs, sigmas = run_vp_scheduler(in_float64(scheduler), x_vp, "epsilon", eta=1.0,
                                      use_clipped_model_output=use_clipped_model_output,
                                      generator=torch.Generator().manual_seed(7))
    ours = our_states("ddim", x_vp * (1 + sigmas[0] ** 2).sqrt(), sigmas, eta=1.0, clip_x0=(-0.3, 0.3),
                      eps_from_clipped_x0=use_clipped_model_output, generator=torch.Generator().manual_seed(7))
    assert_trajectories_match(ours, theirs, rtol=1e-9)


@pytest.mark.parametrize("variance, steps", [("small", 20), ("large", 1000)])
def test_ddpm_ancestral_same_noise(variance, steps):
    scheduler = diffusers.DDPMScheduler(timestep_spacing="trailing", clip_sample=False,
                                        variance_type=f"fixed_{variance}")
    scheduler.set_timesteps(steps)
    x_vp = noise()
    theirs, sigmas = run_vp_scheduler(in_float64(scheduler), x_vp, "epsilon",
                                      generator=torch.Generator().manual_seed(3))
    ours = our_states("ddpm_ancestral", x_vp * (1 + sigmas[0] ** 2).sqrt(), sigmas, variance=variance,
                      generator=torch.Generator().manual_seed(3))
    # sub-sampled: diffusers' extra noise of std 1e-10 on the last step (see the module docstring)
    assert_trajectories_match(ours, theirs, rtol=1e-9 if steps < 1000 else 1e-12)


def test_dpmpp_2m():
    scheduler = diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                      use_karras_sigmas=True, final_sigmas_type="zero",
                                                      prediction_type="sample")
    scheduler.set_timesteps(STEPS)
    sigmas = scheduler.sigmas.double()
    x_vp = noise()
    theirs = []
    for j, t in enumerate(scheduler.timesteps):
        x_vp = scheduler.step(network(x_vp, scheduler.sigmas[j], "sample"), t, x_vp).prev_sample
        theirs.append(x_vp * (1 + sigmas[j + 1] ** 2).sqrt())
    ours = our_states("dpmpp_2m", noise() * (1 + sigmas[0] ** 2).sqrt(), sigmas)
    assert_trajectories_match(ours, theirs, rtol=1e-5)


# ---------------------------------------------------------------- sigma-frame schedulers

def run_sigma_frame_scheduler(scheduler, x, prediction, **step_kwargs):
    states = []
    for j, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, t)
        x = scheduler.step(network(x_in, scheduler.sigmas[j], prediction), t, x, **step_kwargs).prev_sample
        states.append(x)
    return states


def test_euler():
    scheduler = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True, sigma_min=0.002, sigma_max=80.0)
    scheduler.set_timesteps(STEPS)
    x = noise() * scheduler.init_noise_sigma.double()
    theirs = run_sigma_frame_scheduler(scheduler, x, "epsilon")
    assert_trajectories_match(our_states("euler", x, scheduler.sigmas.double()), theirs, rtol=1e-5)


def test_heun():
    scheduler = diffusers.HeunDiscreteScheduler(use_karras_sigmas=True, prediction_type="sample")
    scheduler.set_timesteps(STEPS)
    interleaved = in_float64(scheduler).sigmas  # s0, s1, s1, s2, s2, ..., s_{N-1}, s_{N-1}, 0
    sigmas = torch.cat([interleaved[:1], interleaved[1:-1:2], interleaved[-1:]])
    assert len(sigmas) == STEPS + 1 and len(scheduler.timesteps) == 2 * STEPS - 1  # NFE = 2N - 1
    x = noise() * sigmas[0]
    theirs = run_sigma_frame_scheduler(scheduler, x, "sample")
    theirs = [theirs[2 * i + 1] for i in range(STEPS - 1)] + [theirs[-1]]
    assert_trajectories_match(our_states("heun", x, sigmas), theirs, rtol=1e-12)


def test_lms_order4():
    scheduler = diffusers.LMSDiscreteScheduler(use_karras_sigmas=True)
    scheduler.set_timesteps(STEPS)
    x = noise() * in_float64(scheduler).sigmas[0]
    theirs = run_sigma_frame_scheduler(scheduler, x, "epsilon", order=4)
    assert_trajectories_match(our_states("lms", x, scheduler.sigmas, order=4), theirs, rtol=1e-10)
