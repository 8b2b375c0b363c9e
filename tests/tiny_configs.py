"""The toy-2d preset shrunk for tests (a plain module: tests/ is on sys.path via conftest)."""

from __future__ import annotations


def tiny_toy_config(steps: int, timesteps: int = 20, probe_every: int = 0, **train):
    """toy-2d with T=`timesteps`, a 32-wide one-block MLP, 2,000 points, batch 64, one metric
    row per step; `train` overrides any other train.* field. Validated."""
    from core.presets import load_preset

    cfg = load_preset("toy-2d")
    cfg.model.hidden = 32
    cfg.model.mlp_blocks = 1
    cfg.diffusion.timesteps = timesteps
    cfg.train.num_samples = 2000
    cfg.train.batch_size = 64
    cfg.train.steps = steps
    cfg.train.log_every = 1
    cfg.train.probe_every = probe_every
    cfg.train.probe_timesteps = 10
    cfg.train.warmup_steps = 10
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg.validate()
