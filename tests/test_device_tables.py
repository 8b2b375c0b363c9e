"""Schedule tables per device: GaussianDiffusion serves its float64 arrays as device tensors
made once per (device, dtype), with extract's values, kept for its lifetime (the steps that
use them are checked in tests/test_capture_safety.py)."""

from __future__ import annotations

import numpy as np
import torch

from core.diffusion import GaussianDiffusion
from core.models import UNet
from core.schedule import NoiseSchedule, extract, get_betas, space_timesteps


def make_diffusion(var_type="fixed_small", mean_type="eps", loss_type="simple", T=40):
    return GaussianDiffusion(NoiseSchedule(get_betas("cosine", T)), mean_type=mean_type,
                             var_type=var_type, loss_type=loss_type)


def tiny_unet(learn_sigma: bool) -> UNet:
    torch.manual_seed(0)
    return UNet(1, 8, 2 if learn_sigma else 1, 1, (), 8, channel_mult=(1, 2), num_heads=2)


def test_tables_hold_extracts_values_and_are_made_once_per_device_and_dtype():
    diffusion = make_diffusion().respaced(space_timesteps(40, "10"))
    tables = diffusion.device_tables("cpu")
    assert diffusion.device_tables(torch.device("cpu")) is tables           # cached
    t = torch.tensor([0, 3, 9])
    for name in ("sqrt_alphas_cumprod", "posterior_log_variance_clipped", "betas"):
        expected = extract(getattr(diffusion.schedule, name), t, (3, 1, 8, 8))
        assert tables[name].dtype == torch.float32
        assert torch.equal(tables[name][t].reshape(3, 1, 1, 1), expected), name
    assert tables["timestep_map"].tolist() == diffusion.schedule.timestep_map.tolist()
    assert diffusion.model_timesteps(t).tolist() == diffusion.schedule.timestep_map[[0, 3, 9]].tolist()
    doubles = diffusion.device_tables("cpu", torch.float64)
    assert doubles is not tables and doubles["betas"].dtype == torch.float64
    np.testing.assert_array_equal(doubles["betas"].numpy(), diffusion.schedule.betas)
    reverse = diffusion.with_reverse_variance(np.full(10, 0.01))
    assert "reverse_variance" in reverse.device_tables("cpu")
    assert "reverse_variance" not in diffusion.device_tables("cpu")
