"""Diffusion Explorer's engine: noise schedules, DDPM / improved-DDPM math, entropy bounds,
models, data, training, checkpoints and sampling. Pure torch + numpy; never imports Qt."""

__version__ = "0.1.0"
