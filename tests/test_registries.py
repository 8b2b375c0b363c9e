"""The registries in core are the one list everything reads: a sampler registered in a test
(and nowhere else) is a CLI choice with its option flag, passes config validation, samples
through core.generate on the eager path and through the fast sampler; data sets, schedules
and the diffusion choices derive from their registries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core.samplers as registry
from core.cli import UsageError, build_parser
from core.config import (
    LOSS_TYPES,
    MEAN_TYPES,
    SCHEDULES,
    VARIANCE_TYPES,
    ConfigError,
    ExperimentConfig,
    SamplingConfig,
)
from core.data import DATASET_NAMES, DATASETS, DEFAULT_DATASET, TOY_NAMES, get_dataset
from core.diffusion import GaussianDiffusion
from core.generate import sample
from core.options import LossType, MeanType, VarType
from core.samplers.base import OptionSpec, SamplerRun, SamplerSpec, StepOutput
from core.sampling import FastSampler
from core.schedule import SCHEDULES as SCHEDULE_SPECS
from core.schedule import NoiseSchedule, get_betas

SHIFT = OptionSpec("shift", "shift", 0.0, "added to x at every step (a test option)",
                   low=-5.0, high=5.0)


class ShiftRun(SamplerRun):
    """x_prev = x + shift: a sampler whose effect is known without any model math."""

    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        self.shift = self.table(np.full(self.num_steps, self.options["shift"]))

    def step(self, x, t, noise, variant=0):
        out = self.model_output(x, t)
        view = (-1,) + (1,) * (x.ndim - 1)
        return StepOutput(x + self.shift[t].reshape(view), out["pred_xstart"],
                          out["pred_eps"], torch.zeros((), device=x.device))


@pytest.fixture
def throwaway():
    spec = SamplerSpec(name="throwaway-shift", label="Shift (test)", description="a test",
                       deterministic=True, make_run=ShiftRun, options=(SHIFT,),
                       default_steps=lambda T: min(3, T))
    registry.register(spec)
    try:
        yield spec
    finally:
        registry.unregister(spec.name)
    assert spec.name not in registry.sampler_names()


class ZeroEps(torch.nn.Module):
    def forward(self, x, t, y=None):
        return torch.zeros_like(x)


def diffusion(T=10):
    return GaussianDiffusion(NoiseSchedule(get_betas("linear", T)), data_kind="continuous")


def test_a_registered_sampler_is_a_cli_choice_with_its_option_flag(throwaway):
    parser = build_parser()
    args = parser.parse_args(["sample", "--checkpoint", "x", "--npy", "o.npy",
                              "--sampler", throwaway.name, "--shift", "1.5"])
    assert args.sampler == throwaway.name and args.shift == 1.5
    help_text = parser._subparsers._group_actions[0].choices["sample"].format_help()
    assert throwaway.name in help_text and "--shift" in help_text


def test_a_registered_sampler_passes_config_validation(throwaway):
    config = SamplingConfig(sampler=throwaway.name, options={"shift": 2.0}).validate(100)
    assert config.sampler_options() == {"shift": 2.0}
    assert config.steps_for(100) == 3
    with pytest.raises(ConfigError, match="sampling.shift"):
        SamplingConfig(sampler=throwaway.name, options={"shift": 9.0}).validate()


def test_an_unknown_sampler_is_refused_naming_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        SamplingConfig(sampler="no-such-sampler").validate()
    assert info.value.field == "sampling.sampler"
    for name in registry.sampler_names():
        assert repr(name) in str(info.value)
    with pytest.raises(UsageError, match="invalid choice: 'no-such-sampler'"):
        build_parser().parse_args(["sample", "--checkpoint", "x", "--sampler", "no-such-sampler"])


def test_a_registered_sampler_samples_through_generate_and_the_fast_sampler(throwaway):
    traj = sample(ZeroEps(), diffusion(), 4, (2,), sampler=throwaway.name,
                  options={"shift": 0.5}, seed=1)
    assert traj.timesteps.shape == (4,)                       # x_T and its 3 default steps
    np.testing.assert_allclose(traj.final, traj.x[0] + 3 * 0.5, rtol=1e-6)
    fast = FastSampler(ZeroEps(), diffusion(), (4, 2), sampler=throwaway.name,
                       options={"shift": -1.0}, path="graph")
    noise = torch.randn(4, 2)
    assert fast.active == "eager" and "CUDA" in fast.reason          # no GPU here
    torch.testing.assert_close(fast.sample(noise=noise), noise - 3.0)


def test_registering_a_taken_name_or_a_clashing_option_is_refused(throwaway):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(throwaway)
    clash = OptionSpec("shift", "other", 1.0, "a different option of the same name")
    other = SamplerSpec(name="throwaway-other", label="o", description="o", deterministic=True,
                        make_run=ShiftRun, options=(clash,))
    with pytest.raises(ValueError, match="option 'shift'"):
        registry.register(other)
    assert "throwaway-other" not in registry.sampler_names()


def test_every_registered_sampler_declares_what_the_ui_and_the_cli_need():
    for spec in registry.samplers():
        assert spec.name and spec.label and spec.description
        assert spec.model_calls_per_step >= 1
        assert 1 <= spec.default_steps(1000) <= 1000
        for option in spec.options:
            assert option.check(option.default) == option.default
    assert registry.DEFAULT_SAMPLER in registry.sampler_names()


# ---------------------------------------------------------------------- other registries
def test_data_sets_derive_from_their_registry():
    loadable = tuple(name for name, spec in DATASETS.items() if spec.load is not None)
    assert DATASET_NAMES == loadable and DEFAULT_DATASET in loadable
    assert TOY_NAMES == tuple(n for n in loadable if DATASETS[n].kind == "vector")
    assert ExperimentConfig().train.dataset == DEFAULT_DATASET
    for name in TOY_NAMES:
        data = get_dataset(name, num_samples=100, seed=0)
        assert data.name == name and data.describe().startswith(DATASETS[name].label)


def test_schedules_and_diffusion_choices_derive_from_their_registries():
    assert SCHEDULES == tuple(SCHEDULE_SPECS)
    for name, spec in SCHEDULE_SPECS.items():
        np.testing.assert_array_equal(get_betas(name, 50),
                                      np.minimum(spec.betas(50), 0.999))
    assert MEAN_TYPES == tuple(m.value for m in MeanType)
    assert VARIANCE_TYPES == tuple(v.value for v in VarType)
    assert LOSS_TYPES == tuple(v.value for v in LossType)
    assert [v.learns_sigma for v in VarType] == [False, False, True]
    assert [loss.trains_variance for loss in LossType] == [False, True, True]
    config = ExperimentConfig()
    for value in VARIANCE_TYPES:
        config.diffusion.variance_type = value
        assert config.diffusion.learns_sigma == VarType(value).learns_sigma
