"""Continuous time: the stochastic differential equations that the discrete chains
discretise (Song et al. 2021, "Score-Based Generative Modeling through SDEs").

Variables. Samples live in DDPM's scaling x (VP) everywhere in the explorer; the VE view is
x~ = x / sqrt(abar) = x0 + sigma eps with sigma = sqrt((1 - abar) / abar). The score of
x_t's law is s(x, t) = grad log p_t(x) = -eps(x, t) / sqrt(1 - abar(t)) for an eps-model,
and in the VE view s~ = -eps / sigma.

VP SDE (DDPM): dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw, t in [0, 1], abar(t) =
exp(-int_0^t beta). The discrete <-> continuous map: index i (0-based) of a T-step schedule
sits at t_i = (i + 1) / T, and log abar is linear between (0, 0) and the (t_i, log abar_i),
so abar(t_i) is the discrete abar_i exactly and beta(t) = -T log(1 - beta_i) on
(t_{i-1}, t_i] (about T beta_i: the linear schedule at T = 1000 is Song et al.'s
beta_min = 0.1, beta_max = 20).

VE SDE (NCSN; the "ve" schedule): dx~ = sqrt(d sigma^2 / dt) dw, sigma(t) = sigma_min
(sigma_max / sigma_min)^t; level i sits at t_i = i / (T - 1), t = 0 is sigma_min (taken as
the data, as Song et al. do). It is the VP SDE in the other variables: with x = x~ /
sqrt(1 + sigma^2) (abar = 1 / (1 + sigma^2)), Ito's rule gives dx = -1/2 beta x dt +
sqrt(beta) dw with beta(t) = d log(1 + sigma^2) / dt. So both processes are one interface
here (`ContinuousProcess`): sigma(t), abar(t), beta(t) (the VP rate), the model's
timestep at t, and the process's own ("native") drift and diffusion, in which the samplers
take their Euler-Maruyama and reverse-diffusion steps (VP: x itself; VE: x~).

The prior at t = 1 is N(0, I) in x for both (what every sampler draws; for VE it is N(0,
(1 + sigma_max^2) I) in x~, a 1 / sigma_max^2 relative mismatch to NCSN's N(0, sigma_max^2)).
Everything is float64 numpy on the host (per-step tables are made from it once per run).
"""

from __future__ import annotations

import math

import numpy as np

from core.schedule import NoiseSchedule


class ContinuousProcess:
    """The continuous-time forward process behind a (base) NoiseSchedule. t: float or
    array in [0, 1]. Subclasses define sigma(t), beta(t), t_of_index and the native form."""

    name = "vp"
    t_eps = 1e-5        # where likelihoods and samplers stop short of t = 0 (Song et al.)

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule.base
        self.T = self.schedule.num_timesteps

    # -- the marginals --------------------------------------------------------------
    def sigma(self, t) -> np.ndarray:
        """VE sigma(t) = sqrt((1 - abar) / abar)."""
        raise NotImplementedError

    def alpha_bar(self, t) -> np.ndarray:
        return 1.0 / (1.0 + self.sigma(t) ** 2)

    def marginal(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(mean coefficient, std) of q(x_t | x_0) = N(sqrt(abar) x_0, (1 - abar) I)."""
        abar = self.alpha_bar(t)
        return np.sqrt(abar), np.sqrt(1.0 - abar)

    def beta(self, t) -> np.ndarray:
        """The VP rate beta(t) = -d log abar / dt (drift -1/2 beta x, diffusion sqrt(beta))."""
        raise NotImplementedError

    def t_of_index(self, index) -> np.ndarray:
        """Continuous t of (possibly fractional) timesteps of the unrespaced schedule."""
        raise NotImplementedError

    def model_timestep(self, t) -> np.ndarray:
        """The (fractional) timestep the network sees at t: the schedule's interpolation of
        sigma(t), clipped to [0, T-1] (the network knows no level below index 0)."""
        return self.schedule.timestep_at(np.maximum(self.sigma(t), 1e-300))

    # -- the native form (Euler-Maruyama and reverse-diffusion steps) ----------------------
    def native_scale(self, t) -> np.ndarray:
        """k(t): the native variable is k x (VP: 1; VE: x~ = x / sqrt(abar))."""
        raise NotImplementedError

    def native_drift(self, t) -> np.ndarray:
        """a(t) in the native drift f = a(t) x_native (VP: -beta / 2; VE: 0)."""
        raise NotImplementedError

    def native_g2(self, t) -> np.ndarray:
        """g(t)^2, the native diffusion's square (VP: beta; VE: d sigma^2 / dt)."""
        raise NotImplementedError

    def native_transition(self, t_from, t_to) -> tuple[np.ndarray, np.ndarray]:
        """(a, q): the discrete forward step x_native(t_to) = a x_native(t_from) + sqrt(q) z,
        t_from < t_to (VP: a = sqrt(abar_to / abar_from), q = 1 - abar_to / abar_from;
        VE: a = 1, q = sigma_to^2 - sigma_from^2)."""
        raise NotImplementedError

    def prior_log_density(self, x: np.ndarray) -> np.ndarray:
        """log N(x; 0, I) in nats for x (N, D) at t = 1."""
        d = x.shape[1]
        return -0.5 * (x ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi)


class VPSDE(ContinuousProcess):
    """DDPM's chain in continuous time (module docstring): t_i = (i + 1) / T."""

    name = "vp"

    def __init__(self, schedule: NoiseSchedule):
        super().__init__(schedule)
        self._knots = np.append(0.0, (np.arange(self.T) + 1.0) / self.T)
        self._log_abar = np.append(0.0, np.log(self.schedule.alphas_cumprod))
        self._rates = -self.T * np.log(1.0 - self.schedule.betas)      # beta(t) per interval

    def log_alpha_bar(self, t) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=np.float64), self._knots, self._log_abar)

    def alpha_bar(self, t) -> np.ndarray:
        return np.exp(self.log_alpha_bar(t))

    def sigma(self, t) -> np.ndarray:
        return np.sqrt(np.expm1(-self.log_alpha_bar(t)))

    def beta(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        interval = np.clip(np.ceil(t * self.T).astype(np.int64) - 1, 0, self.T - 1)
        return self._rates[interval]

    def t_of_index(self, index) -> np.ndarray:
        return (np.asarray(index, dtype=np.float64) + 1.0) / self.T

    def model_timestep(self, t) -> np.ndarray:
        # log abar is linear in t between knots, so this is the index with the same abar
        return np.clip(np.asarray(t, dtype=np.float64) * self.T - 1.0, 0.0, self.T - 1.0)

    def native_scale(self, t) -> np.ndarray:
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def native_drift(self, t) -> np.ndarray:
        return -0.5 * self.beta(t)

    def native_g2(self, t) -> np.ndarray:
        return self.beta(t)

    def native_transition(self, t_from, t_to):
        ratio = self.alpha_bar(t_to) / self.alpha_bar(t_from)
        return np.sqrt(ratio), 1.0 - ratio


class VESDE(ContinuousProcess):
    """NCSN's geometric noise levels in continuous time (module docstring): t_i = i / (T-1)."""

    name = "ve"
    t_eps = 0.0

    def __init__(self, schedule: NoiseSchedule):
        super().__init__(schedule)
        _, self.sigma_min, self.sigma_max = self.schedule.process
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t) -> np.ndarray:
        return self.sigma_min * np.exp(np.asarray(t, dtype=np.float64) * self._log_ratio)

    def dsigma2_dt(self, t) -> np.ndarray:
        return 2.0 * self._log_ratio * self.sigma(t) ** 2

    def beta(self, t) -> np.ndarray:
        s2 = self.sigma(t) ** 2
        return 2.0 * self._log_ratio * s2 / (1.0 + s2)

    def t_of_index(self, index) -> np.ndarray:
        return np.asarray(index, dtype=np.float64) / max(self.T - 1, 1)

    def model_timestep(self, t) -> np.ndarray:
        return np.clip(np.asarray(t, dtype=np.float64) * (self.T - 1), 0.0, self.T - 1.0)

    def native_scale(self, t) -> np.ndarray:
        return np.sqrt(1.0 + self.sigma(t) ** 2)

    def native_drift(self, t) -> np.ndarray:
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def native_g2(self, t) -> np.ndarray:
        return self.dsigma2_dt(t)

    def native_transition(self, t_from, t_to):
        q = self.sigma(t_to) ** 2 - self.sigma(t_from) ** 2
        return np.ones_like(np.asarray(q)), q


PROCESSES = {"vp": VPSDE, "ve": VESDE}


def process_of(schedule: NoiseSchedule) -> ContinuousProcess:
    """The continuous-time process of a schedule (respaced ones: their base's)."""
    return PROCESSES[schedule.base.process[0]](schedule)


def run_times(schedule: NoiseSchedule) -> np.ndarray:
    """Continuous t of each index of a (respaced) schedule, float64 (S,)."""
    return process_of(schedule).t_of_index(schedule.timestep_map)


def native_coefficients(process: ContinuousProcess, t: np.ndarray, x_rate, eps_rate,
                        noise_var, t_next: np.ndarray):
    """A native update x_n' = A x_n + B s_n + sqrt(C) z, taken from t to t_next, written in
    x (VP) for an eps-model: s_n = s / k = -eps / (k sqrt(1 - abar(t))), x_n = k x. Returns
    (x_coef, eps_coef, noise_coef) with x' = x_coef x + eps_coef eps + noise_coef z."""
    k, k_next = process.native_scale(t), process.native_scale(t_next)
    root = np.sqrt(1.0 - process.alpha_bar(t))
    return (np.asarray(x_rate) * k / k_next, -np.asarray(eps_rate) / (k * k_next * root),
            np.sqrt(np.maximum(noise_var, 0.0)) / k_next)
