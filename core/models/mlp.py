"""Time-conditioned residual MLP for vector data (2-D toy sets and the like)."""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import EmbedSequential, MLPResBlock, SinusoidalEmbedding, zero_module


class MLPDenoiser(nn.Module):
    """The UNet's conditioning scheme on an MLP.

    emb = MLP(Sinusoidal(t)) [+ ClassEmbedding(y)], width `hidden`;
    h = Linear(x);  h = MLPResBlock(h, emb) x num_blocks;
    out = ZeroLinear(SiLU(LN(h))) + ZeroLinear(x).
    The linear skip from x lets the output grow with |x_t| in the tails (the ideal eps of
    far-out points is nearly linear in x_t); without it the LayerNorm caps the output and
    rare sampling trajectories drift outward.
    Class embedding has num_classes + 1 rows, row `num_classes` being the null class of
    classifier-free guidance (y=None means the null class). With learn_sigma the output is
    [eps, v] concatenated along dim 1.

    forward: x (B, data_dim), t (B,) timesteps of the original schedule, y (B,) long or None
    -> (B, data_dim), or (B, 2 * data_dim) when learn_sigma.
    """

    data_ndim = 1   # one example is (D,)

    def __init__(self, data_dim: int = 2, hidden: int = 128, num_blocks: int = 3,
                 dropout: float = 0.0, learn_sigma: bool = False, num_classes: int | None = None):
        super().__init__()
        for name, value in (("data_dim", data_dim), ("hidden", hidden), ("num_blocks", num_blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPDenoiser: {name}={value!r} must be a positive integer")
        if hidden < 2:
            raise ValueError(f"MLPDenoiser: hidden={hidden} must be at least 2")
        if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
            raise ValueError(f"MLPDenoiser: num_classes={num_classes!r} must be None or >= 1")
        self.data_dim = data_dim
        self.out_dim = 2 * data_dim if learn_sigma else data_dim
        self.learn_sigma = learn_sigma
        self.num_classes = num_classes

        self.time_features = SinusoidalEmbedding(hidden)
        self.time_embed = nn.Sequential(
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label_embed = (nn.Embedding(num_classes + 1, hidden)
                            if num_classes is not None else None)
        self.input_layer = nn.Linear(data_dim, hidden)
        self.blocks = EmbedSequential(
            *[MLPResBlock(hidden, hidden, dropout) for _ in range(num_blocks)])
        self.out = nn.Sequential(
            nn.LayerNorm(hidden), nn.SiLU(), zero_module(nn.Linear(hidden, self.out_dim)))
        self.skip = zero_module(nn.Linear(data_dim, self.out_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"MLPDenoiser expects (B, {self.data_dim}) inputs, "
                             f"got shape {tuple(x.shape)}")
        batch = x.shape[0]
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"MLPDenoiser: t must have shape ({batch},), got {tuple(t.shape)}")
        emb = self.time_embed(self.time_features(t).to(x.dtype))
        if self.label_embed is not None:
            if y is None:
                y = torch.full((batch,), self.num_classes, dtype=torch.long, device=x.device)
            if y.shape != (batch,):
                raise ValueError(f"MLPDenoiser: y must have shape ({batch},), "
                                 f"got {tuple(y.shape)}")
            emb = emb + self.label_embed(y).to(emb.dtype)
        elif y is not None:
            raise ValueError("MLPDenoiser: labels y were given but the model is unconditional "
                             "(num_classes=None)")
        return self.out(self.blocks(self.input_layer(x), emb)) + self.skip(x)
