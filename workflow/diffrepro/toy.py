"""The 2-D toy problem of Sohl-Dickstein et al. 2015: a swiss roll and the small network of its
reverse chain.

The paper (App. D.1.1) modelled "a two dimensional swiss roll" with T = 40 steps and a normalised
radial-basis-function network: one hidden layer of 16 units shared over time and over the mean and
variance functions, and a readout learned separately for each time step. Its image networks read
time out through 10 Gaussian "bump" functions instead (App. D.2.1); both readouts are here, as one
linear readout whose weights are mixed by a basis over time (one-hot per step, or the bumps).

The network's output is [z_mu, z_var] (2 x 2 channels), which denoisers.SohlDickstein turns into
the learned mean and variance of p(x_{t-1} | x_t) as perturbations of the forward kernel.

The paper also learned the forward schedule beta_2..beta_T by gradient ascent on the bound K, with
beta_1 fixed to a small constant (Sec. 2.4.1): LearnedBetas and LearnedScheduleChain below.
"""

import math
from contextlib import contextmanager

import torch
from torch import nn

from .denoisers import ChainLevels, SohlDickstein, chain_levels

F64 = torch.float64


# ---------------------------------------------------------------- data


def swiss_roll(n, noise=0.0, generator=None):
    """n points [n, 2] (float64) of the 2-D swiss roll, in raw units (radius 4.7 to 14.1).

    The paper does not publish its generator. This is the common 2-D projection of the 3-D
    swiss roll (the (x, z) plane of scikit-learn's make_swiss_roll, written out here): position
    t = 1.5 pi (1 + 2u), u ~ U(0, 1), point (t cos t, t sin t), plus isotropic Gaussian noise of
    standard deviation `noise` (raw units).
    """
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, dtype=F64))
    points = torch.stack([t * t.cos(), t * t.sin()], dim=1)
    return points + noise * torch.randn(n, 2, generator=generator, dtype=F64)


def mean_and_std(points):
    """(mean [2], std) that map `points` to zero mean and unit variance per dimension on average.

    Sohl-Dickstein 2015 Table 1: the data were "scaled by a constant to give them variance 1"
    before computing log likelihoods; one constant for both axes keeps the roll's shape.
    """
    mean = points.mean(0)
    return mean, float((points - mean).pow(2).mean().sqrt())


def standardise(points, mean, std):
    return (points - mean) / std


def isotropic_gaussian_log2_likelihood(x):
    """log2 N(x; 0, I) per example (summed over dimensions): the paper's null model L_null,
    the chain's own starting distribution pi(x^T)."""
    return -0.5 * (x.pow(2) + math.log(2 * math.pi)).sum(1) / math.log(2)


# ---------------------------------------------------------------- time readout


def bump_basis(T, n_bumps):
    """[T, n_bumps] normalised Gaussian bumps g_j(t), rows summing to 1.

    Sohl-Dickstein 2015 App. D.2.1 eq. 63; as in the authors' code, t and the centres are spread
    evenly over [-1, 1] and the bump width is half the spacing between centres.
    """
    t = torch.linspace(-1, 1, T, dtype=F64)[:, None]
    centres = torch.linspace(-1, 1, n_bumps, dtype=F64)[None, :]
    width = (centres[0, 1] - centres[0, 0]) / 2
    return torch.softmax(-((t - centres) ** 2) / (2 * width**2), dim=1)


def per_step_basis(T):
    """[T, T] one-hot rows: a readout learned separately for each step (the paper's swiss roll)."""
    return torch.eye(T, dtype=F64)


def time_basis(T, readout, n_bumps=10):
    if readout == "bumps":
        return bump_basis(T, n_bumps)
    if readout == "per_step":
        return per_step_basis(T)
    raise ValueError(f"unknown time readout {readout!r}; allowed: bumps, per_step")


class TimeReadout(nn.Module):
    """A linear readout whose weights at level i are sum_j basis[i, j] W_j (App. D.2.1 eq. 62).

    Zero-initialised, so an untrained chain is the forward kernel run backwards (z_mu = z_var = 0).
    """

    def __init__(self, in_features, out_features, basis):
        super().__init__()
        self.register_buffer("basis", basis.float())
        self.weight = nn.Parameter(torch.zeros(basis.shape[1], in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(basis.shape[1], out_features))

    def forward(self, h, level):
        g = self.basis[level].to(h.dtype)  # [B, J]
        weight = (g @ self.weight.to(h.dtype).flatten(1)).view(-1, *self.weight.shape[1:])  # [B, in, out]
        return (h[:, :, None] * weight).sum(1) + g @ self.bias.to(h.dtype)


# ---------------------------------------------------------------- network


class NormalisedRBF(nn.Module):
    """Hidden units h_k(x) = exp(-|x - c_k|^2 / 2 w_k^2) / sum_l exp(-|x - c_l|^2 / 2 w_l^2),
    with learned centres c_k and widths w_k."""

    def __init__(self, in_features, units, generator=None):
        super().__init__()
        # unit-variance data and chain: centres start as draws from the chain's N(0, I)
        self.centres = nn.Parameter(torch.randn(units, in_features, generator=generator))
        self.log_width = nn.Parameter(torch.full((units,), math.log(0.5)))

    def forward(self, x):
        sq_dist = (x[:, None, :] - self.centres.to(x.dtype)).pow(2).sum(-1)
        return torch.softmax(-sq_dist / (2 * (2 * self.log_width.to(x.dtype)).exp()), dim=1)


class SwissRollNet(nn.Module):
    """net(x_vp [B, D], level [B]) -> [z_mu, z_var] ([B, 2D]): a normalised RBF layer shared over
    time and both functions, then a time readout (Sohl-Dickstein 2015 App. D.1.1)."""

    def __init__(self, num_steps, hidden=16, readout="per_step", n_bumps=10, dims=2, generator=None):
        super().__init__()
        self.rbf = NormalisedRBF(dims, hidden, generator)
        self.readout = TimeReadout(hidden, 2 * dims, time_basis(num_steps, readout, n_bumps))

    def forward(self, x_vp, level):
        # the chain passes level indices as floats (denoisers.DiscreteChain._run_net)
        return self.readout(self.rbf(x_vp), level.round().long())


# ---------------------------------------------------------------- learned forward schedule

# the authors' code keeps every beta in [min_beta, 1 - 1e-5]: 1 - beta_t stays a positive number
BETA_CEILING_GAP = 1e-5


class LearnedBetas(nn.Module):
    """The forward schedule beta_1..beta_T [T] (float64), beta_1 fixed, beta_2..beta_T learned
    (Sohl-Dickstein 2015 Sec. 2.4.1: beta_1 is "fixed to a small constant to prevent overfitting").

    As in the authors' code, a learned beta is a sigmoid of a baseline logit plus a perturbation
    over a time basis, squeezed into [min_beta, 1 - 1e-5]:
        beta_t = min_beta + sigmoid(l_t + sum_j basis[t, j] c_j) (1 - min_beta - 1e-5),  t = 2..T,
    with l_t chosen so that c = 0 gives `baseline` [T - 1] exactly. The coefficients c start at 0:
    training starts from a known chain (in the stage, the authors' fixed schedule, whose logits are
    their baseline_logit), so the fixed-schedule result is the learned one before any step. The
    sigmoid keeps every beta in (0, 1) whatever the optimiser does.
    basis: "per_step" (one coefficient per step) or "bumps" (the authors' Gaussian temporal basis).
    """

    def __init__(self, baseline, beta_1, basis="per_step", n_bumps=10, min_beta=1e-6):
        super().__init__()
        baseline = torch.as_tensor(baseline, dtype=F64)
        span = 1 - min_beta - BETA_CEILING_GAP
        if not 0 < beta_1 < 1:
            raise ValueError(f"beta_1 must be in (0, 1), got {beta_1}")
        if not ((baseline > min_beta) & (baseline < min_beta + span)).all():
            raise ValueError(f"baseline betas must lie in ({min_beta}, {min_beta + span})")
        self.min_beta, self.span = float(min_beta), span
        self.register_buffer("beta_1", torch.tensor([float(beta_1)], dtype=F64))
        self.register_buffer("baseline_logit", torch.logit((baseline - min_beta) / span))
        self.register_buffer("basis", time_basis(len(baseline), basis, n_bumps))
        self.coefficients = nn.Parameter(torch.zeros(self.basis.shape[1], dtype=F64))

    def forward(self):
        logit = self.baseline_logit + self.basis @ self.coefficients
        return torch.cat([self.beta_1, self.min_beta + torch.sigmoid(logit) * self.span])


def learned_chain_levels(betas) -> ChainLevels:
    """The chain's level quantities as differentiable functions of betas [T]: abar_t = prod_{s<=t} (1 - beta_s)."""
    return chain_levels(torch.cumprod(1 - betas, 0), betas)


class LearnedScheduleChain(SohlDickstein):
    """Sohl-Dickstein 2015's chain (learned mean and variance as perturbations of the forward
    kernel) whose forward schedule is learned with it (Sec. 2.4.1).

    Every level quantity the bound and the sampler read (alpha_bars, betas, level_sigmas, the
    posterior coefficients) is recomputed from self.schedule() on each access, so the forward draw
    of x_t, the posterior, the prior term and the reverse kernel all carry the gradient into the
    schedule's coefficients. Inside `with chain.pinned_levels():` they are computed once for the
    block instead (one loss evaluation reads them about ten times).
    """

    def __init__(self, net, schedule: LearnedBetas):
        # DiscreteChain.__init__ would register these names as fixed buffers; here they are
        # properties of the learned betas, so only nn.Module's own setup runs.
        nn.Module.__init__(self)
        self.net = net
        self.schedule = schedule
        self._pinned = None

    def levels(self) -> ChainLevels:
        return self._pinned if self._pinned is not None else learned_chain_levels(self.schedule())

    @contextmanager
    def pinned_levels(self):
        """Compute the levels once for the block; valid while the schedule does not change in it."""
        outer, self._pinned = self._pinned, learned_chain_levels(self.schedule())
        try:
            yield self._pinned
        finally:
            self._pinned = outer

    def levels_resolvable(self):
        """Whether every level's sigma maps back to its own index (DiscreteChain.level); two learned
        levels closer than float32 can tell apart would make the bound read a neighbour's kernel."""
        with torch.no_grad():
            sigmas = self.level_sigmas.float()
            return bool((self.level(sigmas) == torch.arange(self.num_steps)).all())

    alpha_bars = property(lambda self: self.levels().alpha_bars)
    betas = property(lambda self: self.levels().betas)
    level_sigmas = property(lambda self: self.levels().level_sigmas)
    coef_x0 = property(lambda self: self.levels().coef_x0)
    coef_xt = property(lambda self: self.levels().coef_xt)
    log_var_tilde = property(lambda self: self.levels().log_var_tilde)
    log_var_large = property(lambda self: self.levels().log_var_large)

    @property
    def num_steps(self):
        return len(self.schedule.baseline_logit) + 1


# ---------------------------------------------------------------- the model's own sampler


@torch.no_grad()
def chain_samples(chain, n, dims=2, generator=None):
    """n draws [n, dims] from a trained chain's own generative process: x_T ~ N(0, I), then
    x_{t-1} ~ p(x_{t-1} | x_t) with the learned mean and learned variance (chain.reverse), t = T..1.

    The chain ends at level 0, whose kernel is the decoder p(x_0 | x_1) of the bound.
    (The image samplers in samplers.py use fixed variances; this is the paper's own process.)
    """
    x = torch.randn(n, dims, generator=generator, dtype=F64)
    for i in reversed(range(chain.num_steps)):
        sigma = chain.level_sigmas[i].expand(n).to(x.dtype)
        kernel = chain.reverse(x.float(), sigma.float())
        noise = torch.randn(n, dims, generator=generator, dtype=F64)
        x = kernel.mean.double() + (0.5 * kernel.log_var.double()).exp() * noise
    return x
