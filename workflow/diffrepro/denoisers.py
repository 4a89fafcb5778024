"""Parameterisations: wrap a trained network of any paper into a denoiser D(x, sigma) -> x0_hat.

Every wrapper is an nn.Module whose forward takes x in the sigma-frame (x = x0 + sigma * eps,
shape [B, ...]) and sigma (shape [B], or a scalar broadcast over the batch) and returns x0_hat.
VP networks see x_vp = x * sqrt_alpha_bar(sigma) = x / sqrt(1 + sigma^2), i.e. sqrt(abar) x0 +
sqrt(1 - abar) eps, and predict eps, x0 or v. Every parameterisation is a row of one table of
(c_skip, c_out, c_in, c_noise) as in EDM's Table 1 (PRECONDITIONING, C_NOISE below).

Time input given to VP networks:
- discrete chains (DDPM, DDIM, Sohl-Dickstein, iDDPM): the index i in 0..T-1 of the nearest
  level, as a float; level i has alpha_bars[i] = prod_{s<=i} (1 - beta_s), i.e. index i is the
  papers' t = i + 1;
- continuous schedules (the course's cosine, Chen 2023): t = schedule.t_from_sigma(sigma).

Networks with a variance head (Sohl-Dickstein, iDDPM learned variance, variance="learned")
output 2C channels along dim 1: the first C are the mean-side output (z_mu, eps, x0, v or mu),
the last C the variance-side output (z_var, iDDPM's v, or log sigma_t^2).

Discrete-chain wrappers also expose `reverse(x_vp, sigma) -> ReverseKernel(x0_hat, mean,
log_var)`, the Gaussian p(x_{t-1} | x_t) in the VP frame, which the variational bound needs.
"""

from typing import NamedTuple

import torch
from torch import nn

from .noise import alpha_bar_from_sigma, sigma_from_alpha_bar, sqrt_alpha_bar
from .schedules import betas_from_alpha_bar

# what a VP network's output F is; each is a row of PRECONDITIONING
PREDICTIONS = ("eps", "x0", "v")
# reverse-kernel variances: beta_t ("large"), beta_tilde_t ("small") as in samplers.ddpm_ancestral,
# or DDPM Table 2's "learned diagonal": the last C output channels are log sigma_t^2
VARIANCES = ("large", "small", "learned")
PARAMETERISATIONS = ("eps", "x0", "v", "edm", "tfree", "sohl_dickstein", "mu", "eps_learned_variance")


# ---------------------------------------------------------------------------------------------
# small helpers


def per_example(v, like):
    """Reshape a [B] tensor so it broadcasts against `like` ([B, ...])."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def as_batch_sigma(sigma, x):
    """sigma as a [B] tensor of x's dtype and device (a scalar is broadcast over the batch)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma


def normalise_per_example(x):
    # Chen 2023 "normalize noisy input": divide x_t by its own (population) std, per example
    std = x.flatten(1).std(dim=1, correction=0).clamp_min(1e-12)
    return x / per_example(std, x)


def nearest_level(sigma, level_sigmas):
    """Index of the level whose sigma is nearest in log sigma (sigma 0 maps to the lowest level)."""
    log_levels = level_sigmas.to(sigma.dtype).log()
    log_sigma = sigma.clamp_min(log_levels.min().exp()).log()
    return (log_sigma[:, None] - log_levels[None, :]).abs().argmin(dim=1)


# ---------------------------------------------------------------------------------------------
# the preconditioning table
#
# EDM (Karras 2022) eq. 7 writes every denoiser as D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)
# and its Table 1 lists the coefficients of each family; the rows below are ours in that form.
# A VP network sees x_vp = c_in x with c_in = sqrt(abar) = 1 / sqrt(1 + sigma^2), and what it
# predicts fixes c_skip and c_out:
#   eps  x0 = x - sigma eps, DDPM eq. 4 in the sigma frame (Table 1's VP and VE columns)
#   x0   x0 = F
#   v    x0 = abar x - sigma sqrt(abar) v, from v = sqrt(abar) eps - sqrt(1 - abar) x0
#        (Salimans & Ho 2022); it is the edm row at sigma_data = 1 with F's sign flipped
#   edm  Table 1's own column (eq. 7 with the data std sigma_data)


def _eps_row(sigma, sigma_data):
    return torch.ones_like(sigma), -sigma, sqrt_alpha_bar(sigma)


def _x0_row(sigma, sigma_data):
    return torch.zeros_like(sigma), torch.ones_like(sigma), sqrt_alpha_bar(sigma)


def _v_row(sigma, sigma_data):
    return alpha_bar_from_sigma(sigma), -sigma * sqrt_alpha_bar(sigma), sqrt_alpha_bar(sigma)


def _edm_row(sigma, sigma_data):
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt()


# (c_skip, c_out, c_in) as functions of (sigma [B], sigma_data)
PRECONDITIONING = {"eps": _eps_row, "x0": _x0_row, "v": _v_row, "edm": _edm_row}

# c_noise, the noise input F is given, where it is not the schedule's own time (t_from_sigma,
# or a discrete chain's level index):
C_NOISE = {
    "log": lambda sigma: sigma.log() / 4,  # EDM Table 1
    "sigma": lambda sigma: sigma,  # the fast.ai course fed sigma itself
    "none": torch.zeros_like,  # the course's t-free model never sees the noise level
}


def _row(name):
    if name not in PRECONDITIONING:
        raise ValueError(f"unknown prediction {name!r}; allowed: {tuple(PRECONDITIONING)}")
    return PRECONDITIONING[name]


def preconditioning(row, sigma, like, sigma_data=1.0):
    """(c_skip, c_out, c_in) of a PRECONDITIONING row at sigma [B], shaped to broadcast against `like`."""
    return tuple(per_example(c, like) for c in _row(row)(sigma, sigma_data))


def x0_from_vp_output(prediction, out, x_vp, sigma):
    """x0_hat from a VP network's output F given its input x_vp = c_in x (a row of PRECONDITIONING)."""
    c_skip, c_out, c_in = preconditioning(prediction, sigma, x_vp)
    return c_skip * (x_vp / c_in) + c_out * out


class Preconditioned(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise(sigma)) (EDM eq. 7), F = net(input, c_noise).

    `row` names the (c_skip, c_out, c_in) of PRECONDITIONING; `c_noise` maps sigma [B] to the
    noise input (a C_NOISE entry, or a continuous schedule's t_from_sigma). normalise=True divides
    the network input by its own per-example std (Chen 2023, docs/papers.md §4).
    """

    def __init__(self, net, row, c_noise, sigma_data=1.0, normalise=False):
        super().__init__()
        _row(row)  # an unknown row fails here, not at the first forward
        self.net, self.row, self.c_noise = net, row, c_noise
        self.sigma_data, self.normalise = sigma_data, normalise

    def forward(self, x, sigma):
        sigma = as_batch_sigma(sigma, x)
        c_skip, c_out, c_in = preconditioning(self.row, sigma, x, self.sigma_data)
        net_in = normalise_per_example(c_in * x) if self.normalise else c_in * x
        noise_input = torch.as_tensor(self.c_noise(sigma), dtype=x.dtype, device=x.device)
        return c_skip * x + c_out * self.net(net_in, noise_input)


class DataMultiplied(nn.Module):
    """Chen 2023's data multiplier b (the paper's "input scaling"), presented in the unit data space.

    The inner denoiser was trained on data x0_b = b * x0 in [-b, b] (its schedule's sigma,
    sigma_b, is the sigma of that b-scaled space). This wrapper's data space is the unscaled
    one (x0 in [-1, 1], like every other model), so samplers, clipping and metrics never see b:
        D(x, sigma) = D_b(b x, b sigma) / b,   i.e. sigma = sigma_b / b.
    Consequently a caller drawing training or sampling sigmas from the inner schedule must
    divide them by b: in the unit space the schedule's log SNR is shifted by +2 ln b (Chen 2023,
    docs/papers.md §4). The eps-MSE is unchanged by this change of frame (tests/test_losses.py).
    """

    def __init__(self, inner, data_multiplier):
        super().__init__()
        if not data_multiplier > 0:
            raise ValueError(f"data_multiplier must be > 0, got {data_multiplier}")
        self.inner, self.data_multiplier = inner, float(data_multiplier)

    def forward(self, x, sigma):
        b = self.data_multiplier
        return self.inner(b * x, b * as_batch_sigma(sigma, x)) / b


# ---------------------------------------------------------------------------------------------
# discrete chains: DDPM eps/x0/v, DDPM mu, iDDPM learned variance, Sohl-Dickstein 2015


class ReverseKernel(NamedTuple):
    """p(x_{t-1} | x_t) = N(mean, exp(log_var)) in the VP frame, and the x0_hat it implies."""

    x0_hat: torch.Tensor
    mean: torch.Tensor
    log_var: torch.Tensor


class ChainLevels(NamedTuple):
    """What a T-step chain derives from its levels, as tensors [T] (float64)."""

    alpha_bars: torch.Tensor
    betas: torch.Tensor
    level_sigmas: torch.Tensor
    coef_x0: torch.Tensor
    coef_xt: torch.Tensor
    log_var_tilde: torch.Tensor
    log_var_large: torch.Tensor


def chain_levels(alpha_bars: torch.Tensor, betas: torch.Tensor) -> ChainLevels:
    """The level quantities of a chain with these alpha_bars and betas (differentiable in both)."""
    prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
    var_tilde = (1 - prev) / (1 - alpha_bars) * betas  # DDPM eq. 7, beta_tilde_t
    return ChainLevels(
        alpha_bars=alpha_bars,
        betas=betas,
        level_sigmas=sigma_from_alpha_bar(alpha_bars),
        # DDPM eq. 7: mu_tilde = coef_x0 * x0 + coef_xt * x_t
        coef_x0=prev.sqrt() * betas / (1 - alpha_bars),
        coef_xt=(1 - betas).sqrt() * (1 - prev) / (1 - alpha_bars),
        # beta_tilde_1 = 0; as in improved DDPM its log is clipped to beta_tilde_2
        log_var_tilde=torch.cat([var_tilde[1:2], var_tilde[1:]]).log(),
        # DDPM's code ("fixedlarge") also uses beta_tilde_2, not beta_1, for the t = 1 decoder term
        log_var_large=torch.cat([var_tilde[1:2], betas[1:]]).log(),
    )


class DiscreteChain(nn.Module):
    """Shared machinery of a T-step Gaussian chain with levels alpha_bars[0..T-1].

    Subclasses implement reverse(x_vp, sigma); forward(x, sigma) is its x0_hat.
    """

    def __init__(self, net, alpha_bars):
        super().__init__()
        alpha_bars = torch.as_tensor(alpha_bars, dtype=torch.float64)
        if alpha_bars.ndim != 1 or len(alpha_bars) < 2:
            raise ValueError("alpha_bars must be a 1-D tensor of at least 2 levels")
        self.net = net
        for name, value in chain_levels(alpha_bars, betas_from_alpha_bar(alpha_bars))._asdict().items():
            self.register_buffer(name, value)

    @property
    def num_steps(self):
        return len(self.alpha_bars)

    def level(self, sigma):
        return nearest_level(sigma, self.level_sigmas)

    def _at(self, name, i, like):
        return per_example(getattr(self, name)[i].to(like.dtype), like)

    def posterior(self, x0, x_vp, i):
        """q(x_{t-1} | x_t, x0) as (mean, log_var) at level indices i (DDPM eqs. 6-7)."""
        mean = self._at("coef_x0", i, x_vp) * x0 + self._at("coef_xt", i, x_vp) * x_vp
        return mean, self._at("log_var_tilde", i, x_vp).expand_as(x_vp)

    def x0_from_mean(self, mean, x_vp, i):
        # the posterior-mean relation (DDPM eq. 7) solved for x0; exact inverse of posterior()
        return (mean - self._at("coef_xt", i, x_vp) * x_vp) / self._at("coef_x0", i, x_vp)

    def fixed_log_var(self, kind, i, like):
        # DDPM §3.2: sigma_t^2 = beta_t ("large") or beta_tilde_t ("small")
        if kind == "large":
            return self._at("log_var_large", i, like).expand_as(like)
        if kind == "small":
            return self._at("log_var_tilde", i, like).expand_as(like)
        raise ValueError(f"unknown fixed variance {kind!r}; allowed: ('large', 'small')")

    def split_variance(self, out, kind, i, x_vp):
        """(mean-side output, log_var): fixed, or the last C channels as log variance ("learned")."""
        if kind == "learned":
            return out.chunk(2, dim=1)
        return out, self.fixed_log_var(kind, i, x_vp)

    def _run_net(self, x_vp, i):
        return self.net(x_vp, i.to(x_vp.dtype))

    def reverse(self, x_vp, sigma):
        raise NotImplementedError

    def forward(self, x, sigma):
        sigma = as_batch_sigma(sigma, x)
        return self.reverse(x * per_example(sqrt_alpha_bar(sigma), x), sigma).x0_hat


def _check_variance(variance):
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; allowed: {VARIANCES}")


class DiscreteVP(DiscreteChain):
    """DDPM/DDIM-style net(x_vp, i) predicting eps | x0 | v at the nearest discrete level i.

    x0_hat uses the sigma given (off-grid sigmas, e.g. from the EDM sampler, only round the
    time input, as EDM Table 1 does for VP). The reverse kernel's variance is beta_t
    (variance="large"), beta_tilde_t ("small") or a learned log variance ("learned", 2C outputs).
    """

    def __init__(self, net, alpha_bars, prediction="eps", variance="large", normalise=False):
        super().__init__(net, alpha_bars)
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; allowed: {PREDICTIONS}")
        _check_variance(variance)
        self.prediction, self.variance, self.normalise = prediction, variance, normalise

    def reverse(self, x_vp, sigma):
        i = self.level(sigma)
        out = self._run_net(normalise_per_example(x_vp) if self.normalise else x_vp, i)
        out, log_var = self.split_variance(out, self.variance, i, x_vp)
        x0_hat = x0_from_vp_output(self.prediction, out, x_vp, sigma)
        mean, _ = self.posterior(x0_hat, x_vp, i)
        return ReverseKernel(x0_hat, mean, log_var)


class EpsLearnedVariance(DiscreteChain):
    """Improved DDPM: output [eps, v] (2C channels); log var = v log beta + (1-v) log beta_tilde.

    v is used as output (iDDPM eq. 15), so v = 0 gives beta_tilde and v = 1 gives beta.
    """

    def reverse(self, x_vp, sigma):
        i = self.level(sigma)
        eps, v = self._run_net(x_vp, i).chunk(2, dim=1)
        x0_hat = x0_from_vp_output("eps", eps, x_vp, sigma)
        mean, _ = self.posterior(x0_hat, x_vp, i)
        # improved DDPM (Nichol & Dhariwal 2021) eq. 15
        log_var = v * self._at("betas", i, x_vp).log() + (1 - v) * self._at("log_var_tilde", i, x_vp)
        return ReverseKernel(x0_hat, mean, log_var)


class MeanPrediction(DiscreteChain):
    """DDPM's mu parameterisation (Table 2 ablation): net(x_vp, i) outputs mu_tilde directly
    (and, with variance="learned", log sigma_t^2 in C more channels).

    x0_hat inverts the posterior-mean relation, x0 = (mu - coef_xt x_t) / coef_x0; coef_x0
    is ~1e-4 at high noise in DDPM's schedule, so x0_hat there amplifies the net's errors.
    """

    def __init__(self, net, alpha_bars, variance="large"):
        super().__init__(net, alpha_bars)
        _check_variance(variance)
        self.variance = variance

    def reverse(self, x_vp, sigma):
        i = self.level(sigma)
        mean, log_var = self.split_variance(self._run_net(x_vp, i), self.variance, i, x_vp)
        return ReverseKernel(self.x0_from_mean(mean, x_vp, i), mean, log_var)


def sohl_dickstein_mean_log_var(x_vp, z_mu, z_var, beta, num_steps):
    # Sohl-Dickstein 2015 code: mu = x_t sqrt(1-beta_t) + z_mu sqrt(beta_t),
    # var = sigmoid(z_var / sqrt(T) + logit(beta_t))
    mean = x_vp * (1 - beta).sqrt() + z_mu * beta.sqrt()
    log_var = nn.functional.logsigmoid(z_var / num_steps**0.5 + beta.log() - (-beta).log1p())
    return mean, log_var


class SohlDickstein(DiscreteChain):
    """Sohl-Dickstein 2015: learned mean and diagonal variance as perturbations of the forward kernel.

    net(x_vp, i) outputs [z_mu, z_var] (2C channels). x0_hat is the x0 for which the true
    posterior mean q(x_{t-1}|x_t, x0) equals the predicted mean (DiscreteChain.x0_from_mean),
    so the model also serves as a denoiser D(x, sigma) for every sampler.
    """

    def reverse(self, x_vp, sigma):
        i = self.level(sigma)
        z_mu, z_var = self._run_net(x_vp, i).chunk(2, dim=1)
        mean, log_var = sohl_dickstein_mean_log_var(x_vp, z_mu, z_var, self._at("betas", i, x_vp), self.num_steps)
        return ReverseKernel(self.x0_from_mean(mean, x_vp, i), mean, log_var)


# ---------------------------------------------------------------------------------------------
# noise-level predictor for the t-free sampler


class NoiseLevelPredictor(nn.Module):
    """The course's t-predictor: net(x_vp) -> logit(abar) (one output per example).

    logit(abar) = log(abar / (1 - abar)) = log SNR = -2 ln sigma.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x_vp):
        return self.net(x_vp).reshape(x_vp.shape[0])

    def predict_alpha_bar(self, x_vp):
        return torch.sigmoid(self(x_vp))

    def predict_sigma(self, x_vp):
        return (-self(x_vp) / 2).exp()  # sigma = exp(-log SNR / 2)


# ---------------------------------------------------------------------------------------------
# construction from a YAML dict


_OPTIONS = {
    "eps": {"data_multiplier", "normalise", "variance"},
    "x0": {"data_multiplier", "normalise", "variance"},
    "v": {"data_multiplier", "normalise", "variance"},
    "edm": {"sigma_data", "c_noise"},
    "tfree": set(),
    "sohl_dickstein": set(),
    "mu": {"variance"},
    "eps_learned_variance": set(),
}


def _is_discrete(schedule):
    return isinstance(getattr(schedule, "alpha_bars", None), torch.Tensor) and not hasattr(schedule, "t_from_sigma")


def _discrete_alpha_bars(schedule, name):
    if not _is_discrete(schedule):
        raise ValueError(f"parameterisation {name!r} needs a discrete schedule (with .alpha_bars), got {schedule!r}")
    return schedule.alpha_bars


def build_denoiser(net, parameterisation_cfg, schedule=None):
    """Wrap `net` as a denoiser from a config dict such as {name: v} or {name: edm, sigma_data: 0.5}.

    eps/x0/v use the discrete lookup when the schedule is discrete (a tensor .alpha_bars and no
    .t_from_sigma), else c_noise = schedule.t_from_sigma(sigma); options data_multiplier (b, see
    DataMultiplied), normalise, variance (discrete only). edm and tfree ignore the schedule.
    """
    cfg = dict(parameterisation_cfg)
    name = cfg.pop("name", None)
    if name not in _OPTIONS:
        raise ValueError(f"unknown parameterisation {name!r}; allowed: {PARAMETERISATIONS}")
    unknown = set(cfg) - _OPTIONS[name]
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name!r}; allowed: {sorted(_OPTIONS[name])}")

    if name in PREDICTIONS:
        normalise = bool(cfg.get("normalise", False))
        if _is_discrete(schedule):
            d = DiscreteVP(net, schedule.alpha_bars, name, cfg.get("variance", "large"), normalise)
        elif hasattr(schedule, "t_from_sigma"):
            if "variance" in cfg:
                raise ValueError("option 'variance' applies to discrete schedules only")
            d = Preconditioned(net, name, schedule.t_from_sigma, normalise=normalise)
        else:
            raise ValueError(f"parameterisation {name!r} needs a VP schedule (discrete or continuous), got {schedule!r}")
        b = float(cfg.get("data_multiplier", 1.0))
        return d if b == 1.0 else DataMultiplied(d, b)
    if name == "edm":
        c_noise = cfg.get("c_noise", "log")
        if c_noise not in ("log", "sigma"):
            raise ValueError(f"unknown c_noise {c_noise!r}; allowed: ('log', 'sigma')")
        return Preconditioned(net, "edm", C_NOISE[c_noise], sigma_data=float(cfg.get("sigma_data", 0.5)))
    if name == "tfree":
        return Preconditioned(net, "eps", C_NOISE["none"])
    if name == "sohl_dickstein":
        return SohlDickstein(net, _discrete_alpha_bars(schedule, name))
    if name == "mu":
        return MeanPrediction(net, _discrete_alpha_bars(schedule, name), cfg.get("variance", "large"))
    return EpsLearnedVariance(net, _discrete_alpha_bars(schedule, name))
