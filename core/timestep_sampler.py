"""Which timesteps a training batch sees: uniform, or loss-aware importance sampling.

Loss-aware sampling is improved DDPM's section 3.3 (LossSecondMomentResampler): keep the
10 most recent losses L_t of every t; while any t has fewer than 10, sample uniformly;
afterwards sample t with probability

    p_t = (1 - u) * w_t / sum_s w_s + u / T,   w_t = sqrt(E[L_t^2]),  u = 0.001,

and weight each sampled loss by 1 / (T p_t), which keeps the batch mean an unbiased
estimate of the uniform average E_t[L_t]. All state lives on the training device and no
method reads a value back to the host, so a CUDA step never waits for the GPU.
"""

from __future__ import annotations

import torch


class UniformSampler:
    """t ~ Uniform{0..T-1}, every weight 1."""

    def __init__(self, num_timesteps: int, device: torch.device | str = "cpu"):
        self.num_timesteps = int(num_timesteps)
        self.device = torch.device(device)

    def probabilities(self) -> torch.Tensor:
        """p_t, float32 (T,)."""
        return torch.full((self.num_timesteps,), 1.0 / self.num_timesteps, device=self.device)

    def sample(self, batch_size: int, generator: torch.Generator):
        """(t LongTensor (B,), weights float32 (B,) = 1 / (T p_t))."""
        t = torch.randint(0, self.num_timesteps, (batch_size,), generator=generator,
                          device=self.device)
        return t, torch.ones(batch_size, device=self.device)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Uniform sampling ignores losses."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"uniform sampler has no state, got {sorted(state)}")


class LossAwareSampler(UniformSampler):
    """Importance sampling by the root mean square of the recent losses per t (see module doc).

    State: `history` float32 (T + 1, H) (row T swallows the losses that are not kept),
    `count` int64 (T,) the number of losses seen per t (the ring position is count % H).
    """

    def __init__(self, num_timesteps: int, device: torch.device | str = "cpu",
                 history_per_term: int = 10, uniform_prob: float = 0.001):
        super().__init__(num_timesteps, device)
        self.history_per_term = int(history_per_term)
        self.uniform_prob = float(uniform_prob)
        self.history = torch.zeros(self.num_timesteps + 1, self.history_per_term,
                                   device=self.device)
        self.count = torch.zeros(self.num_timesteps, dtype=torch.long, device=self.device)

    def warmed_up(self) -> torch.Tensor:
        """Bool scalar tensor: every t holds `history_per_term` losses."""
        return (self.count >= self.history_per_term).all()

    def probabilities(self) -> torch.Tensor:
        """p_t (T,): uniform until warmed up, then the mixture of the module docstring."""
        T = self.num_timesteps
        weights = self.history[:T].square().mean(dim=1).sqrt()
        importance = weights / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)
        importance = importance * (1.0 - self.uniform_prob) + self.uniform_prob / T
        uniform = torch.full_like(importance, 1.0 / T)
        return torch.where(self.warmed_up(), importance, uniform)

    def sample(self, batch_size: int, generator: torch.Generator):
        """Inverse-CDF draws from p_t: (t (B,), weights 1 / (T p_t) (B,))."""
        p = self.probabilities()
        cdf = p.cumsum(0)
        u = torch.rand(batch_size, generator=generator, device=self.device) * cdf[-1]
        t = torch.searchsorted(cdf, u, right=True).clamp_(max=self.num_timesteps - 1)
        return t, 1.0 / (self.num_timesteps * p[t])

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append losses (B,) at timesteps t (B,) in batch order, keeping the last H per t."""
        T, H = self.num_timesteps, self.history_per_term
        t = t.to(self.device)
        losses = losses.detach().to(self.device, torch.float32)
        order = torch.sort(t, stable=True).indices
        ts, ls = t[order], losses[order]
        per_t = torch.zeros(T, dtype=torch.long, device=self.device)
        per_t.scatter_add_(0, ts, torch.ones_like(ts))
        group_start = per_t.cumsum(0) - per_t
        rank = torch.arange(ts.shape[0], device=self.device) - group_start[ts]
        keep = rank >= per_t[ts] - H                   # only the last H of each t survive
        slot = (self.count[ts] + rank) % H
        row = torch.where(keep, ts, torch.full_like(ts, T))
        self.history.index_put_((row, slot), ls)
        self.count += per_t

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"history": self.history, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("history", "count"):
            current = getattr(self, name)
            value = state.get(name)
            if value is None or tuple(value.shape) != tuple(current.shape):
                shape = None if value is None else tuple(value.shape)
                raise ValueError(f"loss-aware sampler state {name!r} has shape {shape}, "
                                 f"expected {tuple(current.shape)}")
        self.history.copy_(state["history"])
        self.count.copy_(state["count"])


TIMESTEP_SAMPLERS = {"uniform": UniformSampler, "loss-aware": LossAwareSampler}
TIMESTEP_SAMPLER_NAMES = tuple(TIMESTEP_SAMPLERS)


def make_timestep_sampler(name: str, num_timesteps: int, device) -> UniformSampler:
    """A sampler of TIMESTEP_SAMPLERS by name ("uniform" or "loss-aware")."""
    if name not in TIMESTEP_SAMPLERS:
        raise ValueError(f"timestep sampler {name!r} is unknown; use "
                         + " or ".join(repr(n) for n in TIMESTEP_SAMPLER_NAMES))
    return TIMESTEP_SAMPLERS[name](num_timesteps, device)
