"""core.fast_step: the CUDA-graph step body equals the plain step, clean eager fallbacks on
CPU, device-resident schedule tables, the graph self-check, and the fast sampler equal to
core.sampling. GPU tests (graph capture itself) skip without CUDA."""

import contextlib

import numpy as np
import pytest
import torch

import core.samplers as registry
from core.build import diffusion_from_config as build_diffusion
from core.config import ExperimentConfig
from core.data import Dataset
from core.fast_step import ENV_VAR, requested_path, step_runner
from core.fast_train import FastTrainStep, agreement, attach_default, describe_training_path
from core.models import UNet
from core.sampling import FastSampler, ddim_sample, ddpm_sample, make_run
from core.schedule import space_timesteps
from core.training import Trainer

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def image_dataset(n=48, seed=0, classes=3, size=8):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=gen) * 2 - 1
    y = torch.randint(0, classes, (n,), generator=gen)
    return Dataset(name="noise", kind="image", train=x[:40], test=x[40:], train_labels=y[:40],
                   test_labels=y[40:], num_classes=classes, shape=(1, size, size))


def image_config(device="cpu", model=None, diffusion=None, train=None) -> ExperimentConfig:
    data = {
        "model": {"kind": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "num_heads": 2, **(model or {})},
        "diffusion": {"schedule": "cosine", "timesteps": 30, **(diffusion or {})},
        "train": {"batch_size": 6, "lr": 2e-3, "warmup_steps": 3, "steps": 8, "device": device,
                  "log_every": 4, "probe_every": 0, "probe_timesteps": 4, "ema_decay": 0.9,
                  "image_size": 8, **(train or {})},
    }
    return ExperimentConfig.from_dict(data).validate()


def state_of(trainer):
    tensors = [*trainer.model.parameters(), *trainer.ema_model.parameters()]
    for param in trainer.model.parameters():
        entry = trainer.optimizer.state.get(param, {})
        tensors.extend(entry[k] for k in sorted(entry))
    tensors.extend(trainer.timestep_sampler.state_dict().values())
    return [t.detach().double().clone() for t in tensors]


# ---------------------------------------------------------------------- path selection
def test_cpu_trainer_has_no_fast_step_and_describes_the_plain_path(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = Trainer(image_config(), dataset=image_dataset())
    assert trainer.fast_step is None
    assert attach_default(trainer) is None
    assert describe_training_path(trainer) == "eager (cpu, fp32)"
    assert requested_path("cpu") == "eager"
    assert requested_path("cuda") == "graph"
    assert requested_path("cuda", compile_requested=True) == "compile+graph"


def test_environment_variable_picks_the_path_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "compile")
    assert requested_path("cuda") == "compile"
    monkeypatch.setenv(ENV_VAR, "off")
    assert requested_path("cuda") == "eager"
    monkeypatch.setenv(ENV_VAR, "warp")
    with pytest.raises(ValueError, match=ENV_VAR):
        requested_path("cuda")


def test_graph_request_on_cpu_falls_back_to_the_plain_step_with_a_reason():
    dataset = image_dataset()
    plain = Trainer(image_config(), dataset=dataset)
    fast_trainer = Trainer(image_config(), dataset=dataset)
    fast = FastTrainStep(fast_trainer, path="graph")
    assert fast_trainer.fast_step is fast
    assert fast.active == "eager"
    assert "CUDA" in fast.reason and "cpu" in fast.reason
    assert fast.describe().startswith("eager (cpu): fp32 [CUDA graphs need a CUDA device")
    plain.run(6)
    fast_trainer.run(6)
    assert fast_trainer.history["loss"] == plain.history["loss"]
    for a, b in zip(state_of(fast_trainer), state_of(plain), strict=True):
        assert torch.equal(a, b)
    fast.close()
    assert fast_trainer.fast_step is None


def test_bad_path_and_precision_are_named():
    trainer = Trainer(image_config(), dataset=image_dataset())
    with pytest.raises(ValueError, match="fast path 'warp'"):
        FastTrainStep(trainer, path="warp")
    with pytest.raises(ValueError, match="precision 'fp8'"):
        FastTrainStep(trainer, path="eager", precision="fp8")


# ---------------------------------------------------------------------- the captured body
@pytest.mark.parametrize("variant", [
    dict(),
    dict(model={"dropout": 0.2}, train={"class_conditional": True, "label_dropout": 0.3}),
    dict(diffusion={"variance_type": "learned_range", "loss_type": "hybrid",
                    "timestep_sampler": "loss-aware", "mean_type": "v"}),
])
def test_graph_body_run_eagerly_equals_the_plain_trainer_step(variant):
    """The code a CUDA graph captures (static buffers, device EMA weight, row buffer) gives
    the plain step's losses, weights, EMA, optimizer and sampler state on CPU."""
    dataset = image_dataset()
    plain = Trainer(image_config(**variant), dataset=dataset)
    body_trainer = Trainer(image_config(**variant), dataset=dataset)
    fast = FastTrainStep(body_trainer, path="graph", run_body_uncaptured=True)
    assert fast.active == "graph-body"
    plain.run(8)
    body_trainer.run(8)
    for key in ("loss", "mse", "vlb", "grad_norm", "loss_q0", "loss_q3"):
        np.testing.assert_allclose(body_trainer.history[key], plain.history[key],
                                   rtol=1e-5, atol=1e-7, err_msg=key)
    for a, b in zip(state_of(body_trainer), state_of(plain), strict=True):
        # the graph body is the eager step itself: the same ops on the same buffers
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert body_trainer.step == plain.step == 8


def test_graph_body_waits_for_the_end_of_the_lr_warm_up():
    trainer = Trainer(image_config(train={"warmup_steps": 5, "log_every": 10}),
                      dataset=image_dataset())
    fast = FastTrainStep(trainer, path="graph", run_body_uncaptured=True)
    taken = []
    body = fast._body
    fast._body = lambda: (taken.append(trainer.step), body())[1]
    trainer.run(6)
    # lr(step) = lr * min(1, (step + 1) / 5) is constant from step 4 on: only steps 4 and 5
    # go through the graph body, the others through the trainer's eager step
    assert taken == [4, 5] and trainer.step == 6


# ---------------------------------------------------------------------- capture orchestration
class _FakeStream:
    def wait_stream(self, other):
        pass


class _FakeCuda:
    """torch.cuda's graph API on the CPU, to test the capture logic without a GPU: streams do
    nothing; a "capture" runs the step body once and undoes what it did (a real capture only
    records kernels); "replay" runs the body again and writes the captured outputs, as a
    replayed graph does. `broken` ("ema" | "optimizer") makes replays lose that update."""

    def __init__(self, monkeypatch, fast, broken=None, fail_capture=False):
        self.fast, self.broken, self.fail_capture = fast, broken, fail_capture
        self.captures = self.replays = 0
        self.streams, self.warmup_streams, self.capture_streams = [], [], []
        monkeypatch.setattr(torch.cuda, "Stream", self._new_stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: _FakeStream())
        monkeypatch.setattr(torch.cuda, "stream", self._use_stream)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: self)
        monkeypatch.setattr(torch.cuda, "graph", self._capture)

    def _new_stream(self, *args, **kwargs):
        self.streams.append(_FakeStream())
        return self.streams[-1]

    def _use_stream(self, stream):
        self.warmup_streams.append(stream)
        return contextlib.nullcontext()

    def _state(self):
        weights, optimizer, _ = self.fast.trainer._live_tensors()
        return [*weights, *optimizer]

    @contextlib.contextmanager
    def _capture(self, graph, stream=None, capture_error_mode="global"):
        assert graph is self and capture_error_mode == "thread_local"
        self.capture_streams.append(stream)
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        before = [t.detach().clone() for t in self._state()]
        yield
        with torch.no_grad():
            torch._foreach_copy_(self._state(), before)
        self.captures += 1

    def replay(self):
        trainer = self.fast.trainer
        kept = {"ema": list(trainer.ema_model.parameters()),
                "optimizer": list(trainer.model.parameters())}.get(self.broken, [])
        saved = [t.detach().clone() for t in kept]
        with torch.enable_grad():               # a real replay runs no Python at all
            raw, row = self.fast._body()
        if kept:
            with torch.no_grad():
                torch._foreach_copy_(kept, saved)
        self.fast._static["raw"].copy_(raw)
        self.fast._static["row"].copy_(row)
        self.replays += 1


def _graph_on_cpu(monkeypatch, config_kwargs, **fake_kwargs):
    dataset = image_dataset()
    plain = Trainer(image_config(**config_kwargs), dataset=dataset)
    trainer = Trainer(image_config(**config_kwargs), dataset=dataset)
    fast = FastTrainStep(trainer, path="graph")
    fast.active, fast.reason = "graph", ""        # as on a CUDA device
    return plain, trainer, fast, _FakeCuda(monkeypatch, fast, **fake_kwargs)


def test_capture_flow_warms_up_checks_then_replays_with_the_plain_numbers(monkeypatch):
    plain, trainer, fast, cuda = _graph_on_cpu(monkeypatch, {"train": {"warmup_steps": 2}})
    plain.run(12)
    trainer.run(12)
    # steps 0 (lr ramp, plain), 1..3 (side-stream warm-up), 4 (capture + self-check: the
    # plain step is the real one), 5..11 replayed
    assert (cuda.captures, fast.captures) == (1, 1)
    assert cuda.replays == 1 + 7
    assert fast.active == "graph" and fast.reason == "" and fast.describe().startswith("CUDA graph")
    np.testing.assert_allclose(trainer.history["loss"], plain.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(trainer.history["grad_norm"], plain.history["grad_norm"], rtol=1e-5)
    for a, b in zip(state_of(trainer), state_of(plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_changed_learning_rate_warms_up_again_then_captures_on_the_same_side_stream(monkeypatch):
    plain, trainer, fast, cuda = _graph_on_cpu(monkeypatch, {"train": {"warmup_steps": 0}})
    trainer.run(7)
    assert cuda.captures == 1 and len(cuda.warmup_streams) == 3
    trainer.config.train.lr = 1e-3
    trainer.run(3)                         # the old graph no longer fits: 3 new warm-ups
    assert cuda.captures == 1 and len(cuda.warmup_streams) == 6
    trainer.run(1)
    assert cuda.captures == 2 and fast.active == "graph"
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3
    # every warm-up and every capture ran on the one side stream of this fast step
    assert len(cuda.streams) == 1
    assert set(map(id, cuda.warmup_streams + cuda.capture_streams)) == {id(cuda.streams[0])}


def test_a_compile_mode_with_its_own_cuda_graphs_is_refused_inside_the_graph_path():
    trainer = Trainer(image_config(), dataset=image_dataset())
    with pytest.raises(ValueError, match="'reduce-overhead' captures CUDA graphs itself"):
        FastTrainStep(trainer, path="compile+graph", compile_mode="reduce-overhead")


@pytest.mark.parametrize("broken", ["ema", "optimizer"])
def test_self_check_catches_a_graph_that_loses_an_update(monkeypatch, broken):
    plain, trainer, fast, cuda = _graph_on_cpu(monkeypatch, {"train": {"warmup_steps": 0}},
                                               broken=broken)
    plain.run(8)
    trainer.run(8)
    assert fast.active == "eager" and "self-check failed" in fast.reason
    assert "weight updates differ" in fast.reason
    assert cuda.replays == 1
    # the checked step and all later ones are the plain step's
    np.testing.assert_allclose(trainer.history["loss"], plain.history["loss"], rtol=1e-6)
    for a, b in zip(state_of(trainer), state_of(plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_failed_capture_falls_back_and_keeps_the_random_stream(monkeypatch):
    plain, trainer, fast, cuda = _graph_on_cpu(monkeypatch, {"train": {"warmup_steps": 0}},
                                               fail_capture=True)
    plain.run(6)
    trainer.run(6)
    assert fast.active == "eager" and "capture failed" in fast.reason
    assert "RuntimeError" in fast.describe()
    assert trainer.history["loss"] == plain.history["loss"]
    for a, b in zip(state_of(trainer), state_of(plain), strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------- self-check
def test_agreement_accepts_equal_runs_and_names_what_differs():
    row = np.array([0.5, 0.4, 0.1, 2.0, np.nan, 0.3, 0.2, 0.1])
    delta = np.array([1e-3, 2e-3, 5e-4])
    assert agreement(row, row.copy(), delta, delta * (1 + 1e-3)) == ""
    assert "weight updates differ by 1" in agreement(row, row, np.zeros(3), delta)
    assert "metrics differ" in agreement(row * 1.5, row, delta, delta)
    shifted = row.copy()
    shifted[4], shifted[5] = 0.3, np.nan
    assert "NaN" in agreement(shifted, row, delta, delta)


# ---------------------------------------------------------------------- sampling
def tiny_unet(learn_sigma=False, seed=0):
    torch.manual_seed(seed)
    model = UNet(1, 8, 2 if learn_sigma else 1, 1, (), 8, channel_mult=(1, 2), num_heads=2)
    with torch.no_grad():                      # non-zero output layer, so samples depend on it
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("sampler,eta,learned", [("ddim", 0.0, False), ("ddim", 0.7, False),
                                                 ("ddpm", 0.0, False), ("ddpm", 0.0, True)])
def test_fast_sampler_on_cpu_equals_core_sampling(sampler, eta, learned):
    config = image_config(diffusion={"timesteps": 30, "variance_type":
                                     "learned_range" if learned else "fixed_small"})
    diffusion = build_diffusion(config, "image")
    model = tiny_unet(learned)
    shape = (3, 1, 8, 8)
    steps = 10 if sampler == "ddim" else 30
    fast = FastSampler(model, diffusion, shape, sampler=sampler, steps=steps, eta=eta,
                       path="graph", precision="fp32")
    assert fast.active == "eager" and "CUDA" in fast.reason
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    records = list(fast.records(noise=noise, generator=torch.Generator().manual_seed(9)))
    respaced = diffusion.respaced(space_timesteps(30, str(steps))) if steps < 30 else diffusion
    if sampler == "ddim":
        reference = list(ddim_sample(respaced, model, shape, eta=eta, noise=noise,
                                     generator=torch.Generator().manual_seed(9)))
    else:
        reference = list(ddpm_sample(respaced, model, shape, noise=noise,
                                     generator=torch.Generator().manual_seed(9)))
    assert [r.t for r in records] == [r.t for r in reference]
    for got, want in zip(records, reference, strict=True):
        torch.testing.assert_close(got.x, want.x, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.pred_x0, want.pred_x0, rtol=1e-6, atol=1e-6)
        assert got.variance == pytest.approx(want.variance, rel=1e-6, abs=1e-12)
    final = fast.sample(noise=noise, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(final, reference[-1].x, rtol=1e-6, atol=1e-6)


class _FakeSamplerCuda(_FakeCuda):
    """_FakeCuda for a FastSampler's StepRunner: a capture runs the step and puts x back; a
    replay runs it."""

    def _state(self):
        return [self.fast.runner._static["x"]]

    def replay(self):
        self.fast.runner._graph_body(self.fast.runner._variant)
        self.replays += 1


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 0.5), ("ddpm", 0.0)])
def test_fast_sampler_graph_orchestration_equals_core_sampling(monkeypatch, sampler, eta):
    diffusion = build_diffusion(image_config(diffusion={"timesteps": 30}), "image")
    model = tiny_unet()
    shape = (2, 1, 8, 8)
    steps = 6 if sampler == "ddim" else 30
    fast = FastSampler(model, diffusion, shape, sampler=sampler, steps=steps, eta=eta,
                       path="graph", precision="fp32")
    fast.active, fast.reason = "graph", ""               # as on a CUDA device
    cuda = _FakeSamplerCuda(monkeypatch, fast)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    got = fast.sample(noise=noise, generator=torch.Generator().manual_seed(2))
    assert fast.active == "graph", fast.reason
    # one capture; the first replay is checked against eager and undone, then one per step
    assert cuda.captures == 1 and cuda.replays == steps + 1
    respaced = diffusion.respaced(space_timesteps(30, str(steps))) if steps < 30 else diffusion
    run = ddim_sample if sampler == "ddim" else ddpm_sample
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    *_, last = run(respaced, model, shape, noise=noise,
                   generator=torch.Generator().manual_seed(2), **kwargs)
    torch.testing.assert_close(got, last.x, rtol=1e-6, atol=1e-6)
    again = fast.sample(noise=noise, generator=torch.Generator().manual_seed(2))
    assert cuda.captures == 1 and torch.equal(again, got)


def test_fast_sampler_capture_failure_finishes_eagerly(monkeypatch):
    diffusion = build_diffusion(image_config(), "image")
    model = tiny_unet()
    fast = FastSampler(model, diffusion, (2, 1, 8, 8), sampler="ddim", steps=5, path="graph",
                       precision="fp32")
    fast.active = "graph"
    _FakeSamplerCuda(monkeypatch, fast, fail_capture=True)
    eager = FastSampler(model, diffusion, (2, 1, 8, 8), sampler="ddim", steps=5, path="eager",
                        precision="fp32")
    noise = torch.randn(2, 1, 8, 8)
    got = fast.sample(noise=noise)
    assert fast.active == "eager" and "capture failed" in fast.reason
    assert torch.equal(got, eager.sample(noise=noise))


def test_sampling_on_the_cpu_takes_the_eager_runner_without_complaint():
    diffusion = build_diffusion(image_config(), "image")
    run = make_run("ddim", diffusion, tiny_unet(), device="cpu")
    runner = step_runner(run, (2, 1, 8, 8))
    assert runner.active == "eager" and runner.reason == ""
    graph = step_runner(run, (2, 1, 8, 8), path="graph")
    assert graph.active == "eager" and "CUDA" in graph.reason


def test_fast_sampler_rejects_bad_arguments():
    diffusion = build_diffusion(image_config(), "image")
    model = tiny_unet()
    with pytest.raises(ValueError, match="sampler = 'warp-drive'"):
        FastSampler(model, diffusion, (2, 1, 8, 8), sampler="warp-drive")
    with pytest.raises(ValueError, match="steps = 31"):
        FastSampler(model, diffusion, (2, 1, 8, 8), steps=31)
    with pytest.raises(ValueError, match="eta"):
        FastSampler(model, diffusion, (2, 1, 8, 8), eta=-1.0)
    fast = FastSampler(model, diffusion, (2, 1, 8, 8), steps=5)
    with pytest.raises(ValueError, match="noise shape"):
        fast.sample(noise=torch.zeros(3, 1, 8, 8))


# ---------------------------------------------------------------------- GPU
def _cuda_pair(config_kwargs, steps):
    dataset = image_dataset(n=80)
    eager = Trainer(image_config("cuda", **config_kwargs), dataset=dataset)
    if eager.fast_step is not None:
        eager.fast_step.close()
    graphed = Trainer(image_config("cuda", **config_kwargs), dataset=dataset)
    fast = FastTrainStep(graphed, path="graph")
    eager.run(steps)
    graphed.run(steps)
    return eager, graphed, fast


@needs_cuda
def test_cuda_graph_loss_curve_matches_the_eager_path():
    eager, graphed, fast = _cuda_pair({"train": {"warmup_steps": 2, "batch_size": 16}}, 60)
    assert fast.active == "graph", fast.reason
    assert fast.captures >= 1
    loss_eager = np.asarray(eager.history["loss"])
    loss_graph = np.asarray(graphed.history["loss"])
    assert np.isfinite(loss_graph).all()
    # the same batches and noise on both paths: the curves agree step by step
    np.testing.assert_allclose(loss_graph, loss_eager, rtol=0.05, atol=1e-3)
    weights_eager = torch.cat([p.flatten() for p in eager.ema_model.parameters()])
    weights_graph = torch.cat([p.flatten() for p in graphed.ema_model.parameters()])
    assert (weights_graph - weights_eager).norm() <= 0.05 * weights_eager.norm()


@needs_cuda
def test_cuda_graph_recaptures_after_a_checkpoint_restore_changes_the_optimizer_state(tmp_path):
    from core.checkpoint import load_checkpoint, restore_trainer, save_checkpoint

    eager, graphed, fast = _cuda_pair({"train": {"warmup_steps": 0}}, 10)
    captures = fast.captures
    save_checkpoint(tmp_path / "a.ckpt", eager)
    restore_trainer(graphed, load_checkpoint(tmp_path / "a.ckpt", device="cuda"))
    graphed.run(8)
    assert fast.captures > captures and fast.active == "graph", fast.reason


@needs_cuda
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_cuda_graph_sample_matches_eager_within_bf16_tolerance(sampler):
    config = image_config("cuda", diffusion={"timesteps": 100})
    diffusion = build_diffusion(config, "image")
    model = tiny_unet().cuda()
    shape = (8, 1, 8, 8)
    steps = 20 if sampler == "ddim" else 100
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3)).cuda()
    graph = FastSampler(model, diffusion, shape, sampler=sampler, steps=steps, device="cuda",
                        path="graph", precision="bf16")
    eager = FastSampler(model, diffusion, shape, sampler=sampler, steps=steps, device="cuda",
                        path="eager", precision="bf16")
    out_graph = graph.sample(noise=noise, generator=torch.Generator("cuda").manual_seed(4))
    assert graph.active == "graph", graph.reason
    out_eager = eager.sample(noise=noise, generator=torch.Generator("cuda").manual_seed(4))
    # the same bf16 kernels (cuDNN may still pick other algorithms between the two runs)
    torch.testing.assert_close(out_graph, out_eager, rtol=1e-2, atol=1e-2)
    respaced = diffusion.respaced(space_timesteps(100, str(steps))) if steps < 100 else diffusion
    run = ddim_sample if sampler == "ddim" else ddpm_sample
    *_, last = run(respaced, model, shape, noise=noise, device="cuda",
                   generator=torch.Generator("cuda").manual_seed(4))
    # fp32 eager reference against the bf16 graph
    assert (out_graph - last.x).abs().max().item() < 0.1


@needs_cuda
def test_generate_sample_on_cuda_matches_the_eager_path(monkeypatch):
    from core.generate import sample

    diffusion = build_diffusion(image_config("cuda", diffusion={"timesteps": 40}), "image")
    model = tiny_unet().cuda()
    kwargs = dict(sampler="ddpm", seed=3, device="cuda", record_every=10)
    graphed = sample(model, diffusion, 4, (1, 8, 8), **kwargs)
    monkeypatch.setenv(ENV_VAR, "eager")
    eager = sample(model, diffusion, 4, (1, 8, 8), **kwargs)
    assert graphed.timesteps.tolist() == eager.timesteps.tolist()
    np.testing.assert_allclose(graphed.final, eager.final, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(graphed.variance, eager.variance, rtol=1e-5)


def test_fast_sampler_clamps_to_a_box_like_core_sampling(monkeypatch):
    """A (low, high) box (as core.generate passes for vector data) reaches the fast step as
    device tensors made once, and clamps x0_hat exactly as core.sampling does."""
    diffusion = build_diffusion(image_config(diffusion={"timesteps": 30}), "image")
    model = tiny_unet()
    shape, box = (2, 1, 8, 8), (-0.3, 0.4)
    fast = FastSampler(model, diffusion, shape, sampler="ddim", steps=6, clip=box,
                       path="graph", precision="fp32")
    assert all(torch.is_tensor(bound) for bound in fast.clip)
    fast.active, fast.reason = "graph", ""
    _FakeSamplerCuda(monkeypatch, fast)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    got = fast.sample(noise=noise, generator=torch.Generator().manual_seed(4))
    respaced = diffusion.respaced(space_timesteps(30, "6"))
    records = list(ddim_sample(respaced, model, shape, noise=noise, clip_denoised=box,
                               generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(got, records[-1].x, rtol=1e-6, atol=1e-6)
    assert all(r.pred_x0.min() >= -0.3 - 1e-6 and r.pred_x0.max() <= 0.4 + 1e-6 for r in records)
    unclamped = list(ddim_sample(respaced, model, shape, noise=noise, clip_denoised=False))
    assert not torch.allclose(unclamped[-1].x, got)


def test_self_check_compares_replay_and_eager_on_the_same_dropout_masks(monkeypatch):
    """With dropout in the network, the replay and the eager step of the self-check start
    from the same dropout RNG state: they agree exactly, not merely within the tolerance."""
    import core.fast_train as fast_train

    seen = []
    real = fast_train.agreement
    monkeypatch.setattr(fast_train, "agreement",
                        lambda *args, **kw: (seen.append(args), real(*args, **kw))[1])
    config = {"model": {"dropout": 0.5}, "train": {"warmup_steps": 0}}
    plain, trainer, fast, cuda = _graph_on_cpu(monkeypatch, config)
    trainer.run(6)
    assert fast.active == "graph" and len(seen) == 1
    graph_row, eager_row, graph_delta, eager_delta = seen[0]
    np.testing.assert_array_equal(graph_row, eager_row)
    np.testing.assert_array_equal(graph_delta, eager_delta)
    # and the masks change from one replayed step to the next: the RNG state moves on
    states = []
    for _ in range(3):
        trainer.run(1)
        states.append(trainer._dropout_state.clone())
    assert cuda.replays == 1 + 2 + 3       # the check, steps 4-5, then these three
    assert not torch.equal(states[0], states[1]) and not torch.equal(states[1], states[2])
    plain.run(9)
    np.testing.assert_allclose(trainer.history["loss"], plain.history["loss"], rtol=1e-5)


def test_the_tables_a_captured_sampler_step_reads_live_as_long_as_its_runner(monkeypatch):
    """A graph keeps the addresses of every tensor it read at capture: the diffusion's device
    tables and the run's own step tables must stay alive (and unchanged) after sampling."""
    import gc

    diffusion = build_diffusion(image_config(diffusion={"timesteps": 30}), "image")
    fast = FastSampler(tiny_unet(), diffusion, (2, 1, 8, 8), sampler="ddim", steps=6, eta=0.5,
                       path="graph", precision="fp32")
    fast.active, fast.reason = "graph", ""
    cuda = _FakeSamplerCuda(monkeypatch, fast)
    tables = fast.run.diffusion.device_tables("cpu")
    held = {name: (t, t.data_ptr()) for name, t in tables.items()}
    run_tables = {name: getattr(fast.run, name) for name in ("x0_coef", "eps_coef", "sigma")}
    fast.sample(noise=torch.randn(2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    gc.collect()
    assert cuda.captures == 1
    again = fast.run.diffusion.device_tables("cpu")
    assert again is tables
    assert all(again[name] is tensor and tensor.data_ptr() == ptr
               for name, (tensor, ptr) in held.items())
    assert all(getattr(fast.run, name) is value for name, value in run_tables.items())


@pytest.mark.parametrize("sampler", registry.sampler_names())
def test_every_sampler_on_the_graph_orchestration_equals_its_eager_run(monkeypatch, sampler):
    """Captures (one per step variant), the self-check and replays leave a run's state (the
    multistep history) exactly as the eager run has it: the same samples."""
    diffusion = build_diffusion(image_config(diffusion={"timesteps": 30}), "image")
    model = tiny_unet()
    shape = (2, 1, 8, 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    eager = FastSampler(model, diffusion, shape, sampler=sampler, steps=7, path="eager",
                        precision="fp32")
    want = eager.sample(noise=noise, generator=torch.Generator().manual_seed(2))
    fast = FastSampler(model, diffusion, shape, sampler=sampler, steps=7, path="graph",
                       precision="fp32")
    if not fast.run.capturable:
        pytest.skip("an adaptive sampler is not captured")
    fast.active, fast.reason = "graph", ""
    cuda = _FakeSamplerCuda(monkeypatch, fast)
    got = fast.sample(noise=noise, generator=torch.Generator().manual_seed(2))
    assert fast.active == "graph", fast.reason
    variants = {fast.run.variant(step) for step in range(fast.run.num_steps)}
    assert cuda.captures == len(variants)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    again = fast.sample(noise=noise, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(again, want, rtol=1e-6, atol=1e-6)
