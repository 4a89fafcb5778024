"""Noise schedules of the covered papers and the sigma grids samplers walk along.

A schedule object answers two questions in the sigma-frame (x = x0 + sigma * eps):
  * ``sample_sigma(n, generator)``: the noise levels training draws (float64 tensor [n]);
  * ``sampling_sigmas(steps, spacing)``: a decreasing float64 grid of ``steps`` levels
    followed by a final 0, so every sampler takes ``steps`` steps and lands on clean data.
Discrete alpha-bar arrays are indexed t = 1..T (element 0 is t = 1).
"""

import math

import torch

from .noise import alpha_bar_from_sigma, sigma_from_alpha_bar

F64 = torch.float64


# ---------------------------------------------------------------- discrete alpha-bar arrays

def alpha_bar_from_betas(betas):
    # DDPM (Ho 2020) notation: abar_t = prod_{s<=t} (1 - beta_s)
    return torch.cumprod(1 - torch.as_tensor(betas, dtype=F64), 0)


def betas_from_alpha_bar(alpha_bars):
    previous = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
    return 1 - alpha_bars / previous


def linear_beta_alpha_bar(T=1000, beta_min=1e-4, beta_max=0.02):
    # DDPM (Ho 2020) Sec. 4: beta_t linear from 1e-4 to 0.02, T = 1000
    return alpha_bar_from_betas(torch.linspace(beta_min, beta_max, T, dtype=F64))


def iddpm_cosine_alpha_bar(T=1000, s=0.008, max_beta=0.999):
    # Improved DDPM (Nichol & Dhariwal 2021) Eq. 17; betas clipped at max_beta (their Sec. 3.2)
    def f(t):
        return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    t = torch.arange(T + 1, dtype=F64)
    unclipped = f(t) / f(t[:1])
    betas = (1 - unclipped[1:] / unclipped[:-1]).clamp(max=max_beta)
    return alpha_bar_from_betas(betas)


def sohl_dickstein_betas(T=1000, step1_beta=1e-3, min_beta=1e-6):
    # Sohl-Dickstein 2015, official code's fixed schedule: sigmoid(logit(1/linspace(T, 2, T)))
    # squeezed into [min_beta, 1 - 1e-5], with step1_beta added to the first step.
    baseline = 1 / torch.linspace(T, 2, T, dtype=F64)
    floor = torch.full((T,), min_beta, dtype=F64)
    floor[0] += step1_beta
    return floor + torch.sigmoid(torch.logit(baseline)) * (1 - floor - 1e-5)


def sohl_dickstein_alpha_bar(T=1000, step1_beta=1e-3, min_beta=1e-6):
    return alpha_bar_from_betas(sohl_dickstein_betas(T, step1_beta, min_beta))


# ---------------------------------------------------------------- continuous gamma(t) = abar(t)

def _f64(t):
    return torch.as_tensor(t, dtype=F64)


def course_cosine_alpha_bar(t):
    # fast.ai course lesson 22: abar(t) = cos(t pi / 2)^2, t in [0, 1], no offset
    return torch.cos(_f64(t) * math.pi / 2) ** 2


def course_cosine_t(alpha_bar):
    # inverse of course_cosine_alpha_bar: t = acos(sqrt(abar)) * 2 / pi
    return torch.acos(_f64(alpha_bar).clamp(0, 1).sqrt()) * 2 / math.pi


def chen_simple_linear(t):
    # Chen 2023 Alg. 1 simple_linear: gamma(t) = 1 - t
    return (1 - _f64(t)).clamp(1e-9, 1)


def chen_cosine(t, start=0.0, end=1.0, tau=1.0):
    # Chen 2023 Alg. 1 cosine_schedule, v(x) = cos(x pi / 2)^(2 tau)
    def v(x):
        return torch.cos(_f64(x) * math.pi / 2) ** (2 * tau)
    gamma = (v(_f64(t) * (end - start) + start) - v(end)) / (v(start) - v(end))
    return gamma.clamp(1e-9, 1)


def chen_sigmoid(t, start=-3.0, end=3.0, tau=1.0):
    # Chen 2023 Alg. 1 sigmoid_schedule, s(x) = sigmoid(x / tau)
    def s(x):
        return torch.sigmoid(_f64(x) / tau)
    gamma = (s(end) - s(_f64(t) * (end - start) + start)) / (s(end) - s(start))
    return gamma.clamp(1e-9, 1)


# ---------------------------------------------------------------- EDM

def edm_sigmas(n, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    # Karras 2022 Eq. 5: rho-ramp of n levels from sigma_max to sigma_min, then sigma_N = 0
    ramp = torch.linspace(0, 1, n, dtype=F64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def edm_training_sigma(n, p_mean=-1.2, p_std=1.2, generator=None):
    # Karras 2022 Table 1: ln sigma ~ N(P_mean, P_std^2)
    return (p_mean + p_std * torch.randn(n, generator=generator, dtype=F64)).exp()


# ---------------------------------------------------------------- sub-sequence grids

def uniform_timesteps(T, steps):
    """DDIM's linear sub-sequence tau_i = floor(c i), c = T / steps, i = 1..steps (1-based);
    it ends at T, and steps = T gives the full chain. Integer arithmetic keeps floor exact."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    return torch.tensor([T * i // steps for i in range(1, steps + 1)])


def quadratic_timesteps(T, steps):
    """DDIM's quadratic sub-sequence tau_i = floor(c i^2), c = T / steps^2 (1-based, ends at T).
    Where floor(c i^2) repeats or is 0 (small i, c < 1) the level is pushed up to the next
    unused one so the grid stays strictly increasing."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    taus, previous = [], 0
    for i in range(1, steps + 1):
        previous = max(T * i * i // (steps * steps), previous + 1)
        taus.append(previous)
    if taus[-1] != T:  # the push-up can only overshoot if steps > T, excluded above
        raise AssertionError(taus)
    return torch.tensor(taus)


def _push_up(taus):
    # strictly increasing: a level that repeats the previous one moves to the next unused level
    out = []
    for tau in taus:
        out.append(max(int(tau), out[-1] + 1 if out else int(tau)))
    return out


def strided_timesteps(T, steps):
    """The stride of the DDIM authors' code: t = 0, k, 2k, ... (0-based, k = T // steps), i.e.
    tau_i = 1 + (i - 1) k here (1-based). It starts at t = 1 and stops k - 1 short of T, where
    ``uniform_timesteps`` ends at T (docs/papers.md §3)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    stride = T // steps
    return torch.tensor([1 + i * stride for i in range(steps)])


def quadratic_strided_timesteps(T, steps):
    """The quadratic sub-sequence of the DDIM authors' code: t_i = floor((i c)^2) for i = 0..steps-1,
    c = sqrt(0.8 T) / (steps - 1) (0-based), so the grid tops out at 0.8 T; repeated levels (small
    i) are pushed up to the next unused one (docs/papers.md §3)."""
    top = int(0.8 * T)
    if not 1 <= steps <= top:
        raise ValueError(f"steps must be in [1, {top}] (0.8 T), got {steps}")
    if steps == 1:
        return torch.tensor([1])
    root = math.sqrt(0.8 * T)
    points = [root * i / (steps - 1) for i in range(steps - 1)] + [root]  # the end exact, as linspace's
    taus = _push_up(math.floor(p ** 2) for p in points)
    return torch.tensor(taus) + 1


TIMESTEP_SPACINGS = {"uniform": uniform_timesteps, "quadratic": quadratic_timesteps,
                     "strided": strided_timesteps, "quadratic_strided": quadratic_strided_timesteps}


def _with_final_zero(sigmas):
    return torch.cat([sigmas, sigmas.new_zeros(1)])


# ---------------------------------------------------------------- schedule objects

class DiscreteSchedule:
    """T noise levels (DDPM-style); training draws t uniformly from {1..T}."""

    def __init__(self, alpha_bars):
        self.alpha_bars = torch.as_tensor(alpha_bars, dtype=F64)
        self.betas = betas_from_alpha_bar(self.alpha_bars)
        self.sigmas = sigma_from_alpha_bar(self.alpha_bars)  # increasing, sigmas[t-1] is level t
        self.T = len(self.alpha_bars)

    def sample_sigma(self, n, generator=None):
        return self.sigmas[torch.randint(0, self.T, (n,), generator=generator)]

    def sample_timestep(self, n, generator=None):
        """0-based indices t-1 of the levels drawn, for networks trained on integer timesteps."""
        return torch.randint(0, self.T, (n,), generator=generator)

    def timestep(self, sigma):
        """0-based index (t - 1) of the level nearest to sigma in log-sigma; networks that were
        trained on integer timesteps need this lookup. sigma = 0 maps to index 0."""
        log_levels = self.sigmas.log()
        log_sigma = torch.as_tensor(sigma, dtype=F64).clamp(min=1e-300).log()
        return (log_sigma[..., None] - log_levels).abs().argmin(-1)

    def log_snr_at_quantile(self, u):
        """log SNR of the training level at quantile u of t ~ U{1..T} (falls as u grows)."""
        index = (_f64(u) * self.T).long().clamp(0, self.T - 1)
        return -2 * self.sigmas[index].log()

    def sampling_sigmas(self, steps, spacing="uniform"):
        taus = TIMESTEP_SPACINGS[spacing](self.T, steps)
        return _with_final_zero(self.sigmas[taus - 1].flip(0))


class ContinuousSchedule:
    """abar(t) for continuous t; training draws t ~ U(t_min, t_max), sampling is linear in t."""

    def __init__(self, alpha_bar_fn, t_min=0.0, t_max=1.0, t_from_alpha_bar=None):
        self.alpha_bar_fn = alpha_bar_fn
        self.t_min, self.t_max = t_min, t_max
        self.t_from_alpha_bar = t_from_alpha_bar

    def sigma(self, t):
        return sigma_from_alpha_bar(self.alpha_bar_fn(_f64(t)))

    def log_snr_at_quantile(self, u):
        """log SNR at quantile u of the training t ~ U(t_min, t_max)."""
        return -2 * self.sigma(self.t_min + (self.t_max - self.t_min) * _f64(u)).log()

    def sample_t(self, n, generator=None):
        u = torch.rand(n, generator=generator, dtype=F64)
        return self.t_min + (self.t_max - self.t_min) * u

    def sample_sigma(self, n, generator=None):
        return self.sigma(self.sample_t(n, generator))

    def sampling_sigmas(self, steps, spacing="uniform"):
        """`steps` levels at t = t_max, ..., t_min + dt (dt = (t_max - t_min) / steps), then 0 in
        place of t_min: the last step lands on clean data (abar(0) = 1 for every schedule here)."""
        if spacing != "uniform":
            raise ValueError(f"continuous schedules space their grid uniformly in t, not {spacing!r}")
        t = torch.linspace(self.t_max, self.t_min, steps + 1, dtype=F64)[:-1]
        return _with_final_zero(self.sigma(t))

    def t_from_sigma(self, sigma, iterations=64):
        """t with sigma(t) = sigma; closed form when given, else bisection on [t_min, t_max]
        (abar is decreasing in t), which halves the bracket each iteration to float64 precision."""
        target = alpha_bar_from_sigma(torch.as_tensor(sigma, dtype=F64))
        if self.t_from_alpha_bar is not None:
            return self.t_from_alpha_bar(target)
        lo = torch.full_like(target, self.t_min)
        hi = torch.full_like(target, self.t_max)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            too_clean = self.alpha_bar_fn(mid) > target
            lo = torch.where(too_clean, mid, lo)
            hi = torch.where(too_clean, hi, mid)
        return (lo + hi) / 2


class EDMSchedule:
    """Karras 2022: log-normal training sigmas, rho-ramp sampling grid."""

    def __init__(self, sigma_min=0.002, sigma_max=80.0, rho=7.0, p_mean=-1.2, p_std=1.2):
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho
        self.p_mean, self.p_std = p_mean, p_std

    def sample_sigma(self, n, generator=None):
        return edm_training_sigma(n, self.p_mean, self.p_std, generator)

    def log_snr_at_quantile(self, u):
        """log SNR = -2 ln sigma at quantile u of the log-normal ln sigma ~ N(p_mean, p_std^2) (Karras 2022 Sec. 5)."""
        return -2 * (self.p_mean + self.p_std * torch.special.ndtri(_f64(u)))

    def sampling_sigmas(self, steps, spacing="rho"):
        if spacing != "rho":
            raise ValueError(f"EDM grids are rho-ramps, not {spacing!r}")
        return edm_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)


class DataMultipliedSchedule:
    """A schedule seen from the unit data space of a model trained on data scaled by b.

    Chen 2023 §3: with x0 scaled to b * x0, every sigma of the inner schedule is a sigma of the
    b-scaled space, so in the unit space it is sigma / b (log SNR shifted by +2 ln b). Pairs with
    denoisers.DataMultiplied, which maps the unit space back to the network's.
    """

    def __init__(self, inner, data_multiplier):
        self.inner, self.data_multiplier = inner, float(data_multiplier)

    def sample_sigma(self, n, generator=None):
        return self.inner.sample_sigma(n, generator) / self.data_multiplier

    def sampling_sigmas(self, steps, **grid):
        return self.inner.sampling_sigmas(steps, **grid) / self.data_multiplier

    def log_snr_at_quantile(self, u):
        return self.inner.log_snr_at_quantile(u) + 2 * math.log(self.data_multiplier)

    @property
    def sigmas(self):
        return self.inner.sigmas / self.data_multiplier


# ---------------------------------------------------------------- registry (YAML name -> builder)

def _continuous(fn, t_min=0.0, t_max=1.0, t_from_alpha_bar=None, **params):
    return ContinuousSchedule(lambda t: fn(t, **params), t_min, t_max, t_from_alpha_bar)


SCHEDULES = {
    "linear_beta": lambda T=1000, beta_min=1e-4, beta_max=0.02: DiscreteSchedule(
        linear_beta_alpha_bar(T, beta_min, beta_max)),
    "iddpm_cosine": lambda T=1000, s=0.008, max_beta=0.999: DiscreteSchedule(
        iddpm_cosine_alpha_bar(T, s, max_beta)),
    "sohl_dickstein": lambda T=1000, step1_beta=1e-3, min_beta=1e-6: DiscreteSchedule(
        sohl_dickstein_alpha_bar(T, step1_beta, min_beta)),
    # the course trained on t ~ U(0, 0.999): abar(1) = 0 would be an infinite sigma
    "course_cosine": lambda t_min=0.0, t_max=0.999: ContinuousSchedule(
        course_cosine_alpha_bar, t_min, t_max, course_cosine_t),
    "chen_simple_linear": lambda t_min=0.0, t_max=1.0: _continuous(chen_simple_linear, t_min, t_max),
    "chen_cosine": lambda start=0.0, end=1.0, tau=1.0, t_min=0.0, t_max=1.0: _continuous(
        chen_cosine, t_min, t_max, start=start, end=end, tau=tau),
    "chen_sigmoid": lambda start=-3.0, end=3.0, tau=1.0, t_min=0.0, t_max=1.0: _continuous(
        chen_sigmoid, t_min, t_max, start=start, end=end, tau=tau),
    "edm": EDMSchedule,
}


def build_schedule(config):
    """A schedule from a YAML mapping such as {name: linear_beta, T: 1000, beta_max: 0.02}."""
    params = dict(config)
    return SCHEDULES[params.pop("name")](**params)
