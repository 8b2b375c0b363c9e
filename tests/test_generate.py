"""core.generate.sample: frames, shapes, dtypes, respacing, guidance, seeds, stopping."""

import numpy as np
import pytest
import torch
from torch import nn

from core.config import ModelConfig
from core.diffusion import GaussianDiffusion
from core.generate import Trajectory, images_to_uint8, sample
from core.models import build_model
from core.schedule import NoiseSchedule, get_betas, space_timesteps


def diffusion(T=20, data_kind="continuous", var_type="fixed_small"):
    return GaussianDiffusion(NoiseSchedule(get_betas("linear", T)), var_type=var_type,
                             data_kind=data_kind)


class ConstantEps(nn.Module):
    """eps_hat = value[y] (or value[0] without labels), whatever x and t are."""

    def __init__(self, values, num_classes=None):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.num_classes = num_classes
        self.seen_labels = []

    def forward(self, x, t, y=None):
        if y is None:
            return self.values[0].expand_as(x).clone()
        self.seen_labels.append(y.clone())
        return self.values[y].reshape(-1, *([1] * (x.ndim - 1))).expand_as(x).clone()


def test_ddim_with_zero_eps_scales_the_noise_in_closed_form():
    """eps_hat = 0 and eta = 0: x_prev = sqrt(abar_prev / abar) x_t at each step, so the
    product telescopes to x_0 = x_T / sqrt(abar at the first visited step)."""
    d = diffusion(T=20)
    traj = sample(ConstantEps([0.0]), d, 5, (2,), sampler="ddim", steps=4, seed=7)
    x_T = torch.randn((5, 2), generator=torch.Generator().manual_seed(7)).double().numpy()
    kept = space_timesteps(20, "4")
    expected = x_T / np.sqrt(d.schedule.alphas_cumprod[kept[-1]])
    np.testing.assert_allclose(traj.final, expected, rtol=1e-5)
    np.testing.assert_allclose(traj.x[0], x_T, rtol=1e-6)
    assert traj.timesteps.tolist() == [20] + kept[::-1]
    assert traj.variance.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert traj.completed and traj.kind == "vector" and traj.final_uint8 is None


def test_ddpm_variance_is_the_posterior_variance_and_zero_at_the_end():
    d = diffusion(T=10)
    traj = sample(ConstantEps([0.0]), d, 3, (2,), sampler="ddpm")
    expected = d.schedule.posterior_variance[::-1].copy()
    expected[-1] = 0.0
    np.testing.assert_allclose(traj.variance[1:], expected, rtol=1e-5)
    assert traj.timesteps.tolist() == [10] + list(range(9, -1, -1))


def test_record_every_keeps_first_and_last():
    traj = sample(ConstantEps([0.1]), diffusion(T=20), 4, (2,), record_every=7)
    assert traj.timesteps.tolist() == [20, 13, 6, 0]
    assert traj.x.shape == (4, 4, 2) and traj.pred_x0.shape == (4, 4, 2)
    assert traj.x.dtype == np.float32
    np.testing.assert_array_equal(traj.x[-1], traj.final)


def test_default_steps_all_for_ddpm_fifty_for_ddim():
    d = diffusion(T=60)
    assert len(sample(ConstantEps([0.0]), d, 1, (2,), sampler="ddpm").timesteps) == 61
    assert len(sample(ConstantEps([0.0]), d, 1, (2,), sampler="ddim").timesteps) == 51
    with pytest.raises(ValueError, match="only 60 timesteps"):
        sample(ConstantEps([0.0]), d, 1, (2,), steps=61)


def test_images_are_uint8_frames_and_final_in_data_space():
    model = build_model(ModelConfig(kind="unet", channels=8, channel_mult=(1,), num_res_blocks=1,
                                    attention_resolutions=()), (1, 8, 8))
    d = diffusion(T=6, data_kind="image")
    traj = sample(model.eval(), d, 3, (1, 8, 8), sampler="ddim", steps=3)
    assert traj.kind == "image"
    assert traj.x.shape == (4, 3, 8, 8, 1) and traj.x.dtype == np.uint8
    assert traj.pred_x0.shape == (4, 3, 8, 8, 1) and traj.pred_x0.dtype == np.uint8
    assert traj.final.shape == (3, 1, 8, 8) and traj.final.dtype == np.float32
    assert traj.final.min() >= -1.0 and traj.final.max() <= 1.0       # clipped x0 by default
    np.testing.assert_array_equal(traj.final_uint8, images_to_uint8(torch.from_numpy(traj.final)))


def test_images_to_uint8_endpoints():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 4)
    assert images_to_uint8(x).reshape(-1).tolist() == [0, 128, 255, 255]


def test_same_seed_same_samples_other_seed_other_samples():
    d = diffusion(T=10)
    a = sample(ConstantEps([0.2]), d, 4, (2,), seed=1).final
    b = sample(ConstantEps([0.2]), d, 4, (2,), seed=1).final
    c = sample(ConstantEps([0.2]), d, 4, (2,), seed=2).final
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_guidance_mixes_conditional_and_null_outputs():
    """Guided eps = (1 + w) eps(y) - w eps(null): the same run as an unguided model that
    outputs that mixture directly."""
    values = [0.3, -0.2, 0.5]                  # classes 0, 1 and the null class 2
    w, label = 2.0, 1
    guided_model = ConstantEps(values, num_classes=2)
    guided = sample(guided_model, diffusion(), 3, (2,), sampler="ddim", steps=5, guidance=w,
                    label=label, num_classes=2, seed=3)
    mixed = (1 + w) * values[label] - w * values[2]
    direct = sample(ConstantEps([mixed]), diffusion(), 3, (2,), sampler="ddim", steps=5, seed=3)
    np.testing.assert_allclose(guided.final, direct.final, rtol=1e-5)
    assert {int(v) for y in guided_model.seen_labels for v in y} == {1, 2}
    assert guided.labels.tolist() == [1, 1, 1]


def test_conditional_model_without_label_samples_the_null_class():
    model = ConstantEps([0.0, 0.0, 0.0], num_classes=2)
    sample(model, diffusion(T=5), 2, (2,), num_classes=2)
    assert all(torch.all(y == 2) for y in model.seen_labels)


@pytest.mark.parametrize("kwargs, message", [
    ({"guidance": 1.0, "num_classes": 2}, "guidance needs a label"),
    ({"label": 2, "num_classes": 2}, "classes are 0..1"),
    ({"label": 0}, "unconditional"),
    ({"sampler": "warp-drive"}, "sampler"),
    ({"record_every": 0}, "record_every"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(ConstantEps([0.0, 0.0, 0.0]), diffusion(T=5), 2, (2,), **kwargs)


def test_should_stop_returns_the_partial_trajectory():
    d = diffusion(T=10)
    full = sample(ConstantEps([0.2]), d, 3, (2,), seed=5)
    calls = []
    polls = iter([False, False, False, True])
    partial = sample(ConstantEps([0.2]), d, 3, (2,), seed=5, record_every=2,
                     progress=lambda i, n: calls.append((i, n)), should_stop=lambda: next(polls))
    assert isinstance(partial, Trajectory) and not partial.completed
    assert calls == [(1, 10), (2, 10), (3, 10)]
    assert partial.timesteps.tolist() == [10, 8, 7]        # frame 0, step 2, and the last step
    np.testing.assert_array_equal(partial.final, full.x[3])


def test_stop_before_the_first_step_returns_only_the_noise():
    traj = sample(ConstantEps([0.2]), diffusion(T=10), 3, (2,), should_stop=lambda: True)
    assert not traj.completed and traj.timesteps.tolist() == [10]
    np.testing.assert_array_equal(traj.final, traj.x[0])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_vector_samples_are_clamped_to_the_data_box_only_when_given(sampler):
    """Cosine schedule, 10 of 1000 steps, a network whose eps is off by 0.5: the first step's
    x0 estimate is x_T / sqrt(abar) ~ 1e4 away. Without a box the samples blow up; with
    one, x0_hat is clamped per dimension and the last step returns x0_hat itself."""
    d = GaussianDiffusion(NoiseSchedule(get_betas("cosine", 1000)), data_kind="continuous")
    box = ([-3.0, -1.0], [3.0, 2.0])
    wild = sample(ConstantEps([0.5]), d, 200, (2,), sampler=sampler, steps=10, seed=1)
    assert np.abs(wild.final).max() > 100
    tame = sample(ConstantEps([0.5]), d, 200, (2,), sampler=sampler, steps=10, seed=1, data_box=box)
    assert np.all(tame.final >= np.array(box[0]) - 1e-6)
    assert np.all(tame.final <= np.array(box[1]) + 1e-6)
    for frame in tame.pred_x0[1:]:  # frame 0 holds zeros for x_T
        assert np.all(frame >= np.array(box[0]) - 1e-6) and np.all(frame <= np.array(box[1]) + 1e-6)
    off = sample(ConstantEps([0.5]), d, 200, (2,), sampler=sampler, steps=10, seed=1, data_box=box,
                 clip=False)
    np.testing.assert_array_equal(off.final, wild.final)


def test_a_box_given_as_a_list_is_a_box_and_a_malformed_one_is_refused():
    d = GaussianDiffusion(NoiseSchedule(get_betas("cosine", 1000)), data_kind="continuous")
    as_tuple = sample(ConstantEps([0.5]), d, 50, (2,), steps=10, seed=2, clip=(-3.0, 2.0))
    as_list = sample(ConstantEps([0.5]), d, 50, (2,), steps=10, seed=2, clip=[-3.0, 2.0])
    np.testing.assert_array_equal(as_tuple.final, as_list.final)
    assert as_list.final.min() >= -3.0 - 1e-6 and as_list.final.max() > 1.0  # not [-1, 1]
    with pytest.raises(ValueError, match="pair"):
        sample(ConstantEps([0.5]), d, 5, (2,), steps=10, seed=2, clip=(-3.0, 0.0, 2.0))


def test_the_trajectory_says_which_path_ran_the_steps():
    traj = sample(ConstantEps([0.0, 0.0, 0.0]), diffusion(T=5), 2, (2,))
    assert traj.path == "eager (cpu)"


@pytest.mark.parametrize("module, options", [("langevin", {"langevin_steps": 3.0}),
                                             ("pc", {"corrector_steps": 2.0})])
def test_sub_step_samplers_record_every_sub_step_at_its_level(module, options):
    """Langevin and predictor-corrector take K (or 1 + C) sub-steps per level: each recorded
    frame carries its level's timestep, from T down to 0."""
    import importlib

    spec = importlib.import_module(f"core.samplers.{module}").SPEC
    d = diffusion(T=20)
    traj = sample(ConstantEps([0.0]), d, 3, (2,), sampler=spec.name, steps=5,
                  options=options, seed=0, record_every=1)
    per_level = spec.network_calls(5, options) // 5
    levels = d.schedule.respace(space_timesteps(20, [5])).timestep_map
    assert len(traj.timesteps) == 1 + 5 * per_level
    assert traj.timesteps[0] == 20
    expected = np.repeat(np.asarray(levels, dtype=np.int64)[::-1], per_level)
    assert np.array_equal(traj.timesteps[1:], expected)
