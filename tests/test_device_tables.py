"""Schedule tables per device: GaussianDiffusion serves its float64 arrays as device tensors
made once per (device, dtype), with extract's values; the training loss and every sampler
step then gather from them with no conversion of host tables, no read back to the host and
no data-dependent shape (each op of those calls is recorded with a TorchDispatchMode)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import core.samplers as registry
from core.diffusion import GaussianDiffusion
from core.models import UNet
from core.sampling import make_run
from core.schedule import NoiseSchedule, extract, get_betas, space_timesteps

FORBIDDEN = ("aten._local_scalar_dense", "aten.lift_fresh", "aten.nonzero", "aten.unique",
             "aten._unique", "aten.masked_select", "aten.scalar_tensor")


class OpRecorder(TorchDispatchMode):
    """Every aten op with the dtypes of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
        self.ops.append((str(func), dtypes))
        return func(*args, **(kwargs or {}))

    def problems(self) -> list[str]:
        bad = [name for name, _ in self.ops if name.startswith(FORBIDDEN)]
        # a float64 table converted on the fly (what extract does on every call)
        bad += [f"{name} of float64" for name, dtypes in self.ops
                if name.startswith("aten._to_copy") and torch.float64 in dtypes]
        return bad


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


@pytest.mark.parametrize("var_type,mean_type,loss_type", [
    ("fixed_small", "eps", "simple"), ("fixed_large", "x0", "vlb"),
    ("learned_range", "v", "hybrid")])
def test_the_training_loss_converts_no_host_table(var_type, mean_type, loss_type):
    diffusion = make_diffusion(var_type, mean_type, loss_type)
    model = tiny_unet(diffusion.learns_sigma)
    x0, noise = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 5, 20, 39])
    diffusion.training_losses(model, x0, t, noise=noise)               # tables made here
    recorder = OpRecorder()
    with recorder:
        diffusion.training_losses(model, x0, t, noise=noise)
    assert recorder.problems() == []


SAMPLER_CASES = list(itertools.product(registry.sampler_names(),
                                       ["fixed_small", "learned_range"], [False, True]))


@pytest.mark.parametrize("sampler,var_type,clip", SAMPLER_CASES)
def test_every_sampler_step_converts_no_host_table_and_reads_nothing_back(sampler, var_type, clip):
    diffusion = make_diffusion(var_type).respaced(space_timesteps(40, "8"))
    spec = registry.get_sampler(sampler)
    options = {option.name: option.default for option in spec.options}
    if "eta" in options:
        options["eta"] = 0.5                           # the noisy DDIM, every table in use
    run = make_run(spec, diffusion, tiny_unet(diffusion.learns_sigma), options=options,
                   clip_denoised=clip)
    x, noise = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.full((3,), 5, dtype=torch.long)
    recorder = OpRecorder()
    with recorder, torch.no_grad():
        run.step(x, t, noise)
    assert recorder.problems() == []
