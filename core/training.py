"""The training loop: `Trainer.run` takes steps cooperatively (a stop flag is polled between
steps), with per-step metrics, a periodic probe (core.probe) and a divergence stop.

One step, with B the batch size and T the number of timesteps: the trainer draws

    x0, y = data[idx], labels[idx]           idx ~ Uniform{0..N-1}^B (this rank's shard)
    y     = null class with probability p    (label dropout, classifier-free guidance)
    t, w  = timestep_sampler.sample(B)       uniform (w = 1) or loss-aware (w = 1/(T p_t))
    eps   ~ N(0, I)

sets lr = lr * min(1, (n + 1) / warmup_steps) and the EMA weight 1 - decay_n (core.ema), then
runs core.train_step.train_step (loss, backward, clipping, AdamW, EMA, metrics row) eagerly,
or replays it as a CUDA graph (core.fast_step), and afterwards updates the timestep sampler.

Every random number (indices, label dropout, t, noise, and the model's dropout) comes from
generators the trainer owns and saves in checkpoints, so a resumed run continues exactly.
On CUDA the step runs the model under bf16 autocast with channels-last images and never
reads a value back to the host: per-step metrics are written to a device buffer that is
read once every `log_every` steps, and the non-finite check then rolls back to a snapshot
taken at the previous read. On CPU and MPS the step runs in fp32 and checks every step
before the optimizer touches the weights.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core import distributed
from core.analytic_dpm import per_dimension_variance
from core.build import (
    dataset_from_config,
    diffusion_from_config,
    model_from_config,
    model_num_classes,
)
from core.config import ConfigError, ExperimentConfig
from core.data.dataset import data_box
from core.device import AutocastModel, get_rng_state, resolve_device, set_rng_state
from core.ema import EMA, effective_decay, make_ema
from core.fast_train import attach_default
from core.probe import probe_batch_size, probe_model, probe_timesteps
from core.timestep_sampler import make_timestep_sampler
from core.train_step import METRIC_KEYS, StepBatch, train_step

__all__ = ["HISTORY_KEYS", "Trainer", "TrainingDiverged", "data_box", "probe_batch_size",
           "resolve_device"]

HISTORY_KEYS = ("step", "loss", "mse", "vlb", "grad_norm", "lr", "samples_per_sec",
                "loss_q0", "loss_q1", "loss_q2", "loss_q3")
# the per-step values written to the device buffer, in this order
_DEVICE_KEYS = METRIC_KEYS
_PROBE_SEED_OFFSET = 99_991
_RANK_SEED_STRIDE = 1_000_003


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient norm. The trainer keeps the weights of `good_step`."""

    def __init__(self, step: int, quantity: str, value: float, good_step: int):
        self.step = step
        self.quantity = quantity
        self.value = value
        self.good_step = good_step
        super().__init__(
            f"training diverged at step {step}: the {quantity} is {value} (not finite); the "
            f"weights of step {good_step} are kept. Try a lower train.lr, a longer "
            f"train.warmup_steps or a smaller train.grad_clip")


@dataclass
class _Snapshot:
    """Copies of the trainer state at a step known to be finite (deferred-check mode)."""

    step: int
    weights: list[torch.Tensor]
    optimizer: list[torch.Tensor]
    sampler: list[torch.Tensor]
    generators: dict[str, torch.Tensor] = field(default_factory=dict)


class Trainer:
    """Trains a diffusion model on a data set resident on `device` (see module docstring).

    Attributes: config, dataset, device, model (the bare network), ema_model, diffusion,
    optimizer, timestep_sampler, step (optimizer steps taken), history (dict of lists, one
    entry per step, keys HISTORY_KEYS), probe_history (list of probe dicts), num_classes
    (model classes or None), data_shape, rank, world_size.
    """

    def __init__(self, config: ExperimentConfig, dataset=None, device=None):
        config.validate()
        self.config = config
        tc = config.train
        self.device = resolve_device(device if device is not None else tc.device)
        if dataset is None:
            dataset = dataset_from_config(config)
        self.dataset = dataset
        self.rank, self.world_size = distributed.rank_and_world()
        self.num_classes = model_num_classes(config, dataset)
        self.data_shape = tuple(int(s) for s in dataset.shape)
        self.is_image = dataset.kind == "image"
        self.diffusion = diffusion_from_config(config, dataset.kind)
        self.diffusion.device_tables(self.device)      # now, not inside a step (or a capture)
        self.batch_size = tc.batch_size

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            model = model_from_config(config, self.data_shape, self.num_classes)
        self.model = model.to(self.device)
        self._cuda = self.device.type == "cuda"
        self._uses_dropout = config.model.dropout > 0
        if self._cuda and self.is_image:
            self.model.to(memory_format=torch.channels_last)
        self.ema_model = make_ema(self.model)
        self._ema = EMA(self.ema_model, self.model)
        self._ema_lock = threading.Lock()
        self._ema_weight = torch.zeros((), device=self.device)   # 1 - decay_n, refilled per step
        self._params = list(self.model.parameters())
        self.optimizer = _adamw(self._params, tc.lr, tc.weight_decay, self.device)
        self.timestep_sampler = make_timestep_sampler(config.diffusion.timestep_sampler,
                                                      self.diffusion.num_timesteps, self.device)
        self._train_model = self._wrap_for_training(self.model)

        self._load_data_to_device()
        self._seed_generators()
        self._probe_batch = self._make_probe_batch()
        self.data_variance = _data_variance(self.dataset.train)
        self.data_box = None if self.is_image else data_box(self.dataset.train)

        self.step = 0
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        self.probe_history: list[dict] = []
        # CPU/MPS: check every step before the update; CUDA: check when metrics are read.
        self._deferred_checks = self._cuda
        self._rows = torch.zeros(tc.log_every, len(_DEVICE_KEYS), device=self.device)
        self._pending: list[tuple[int, float]] = []    # (step, lr) of rows not yet read
        self._window_start = time.perf_counter()
        self._snapshot: _Snapshot | None = None
        self._probe_requested = threading.Event()
        # GPU fast path (core.fast_step): a CUDA-graph step on CUDA, None (the eager step) elsewhere
        self.fast_step = attach_default(self)

    # ------------------------------------------------------------------ set-up
    def _wrap_for_training(self, model: nn.Module) -> nn.Module:
        wrapped = model
        if self.config.train.compile:
            wrapped = torch.compile(wrapped)
        if self.world_size > 1:
            wrapped = distributed.wrap_ddp(wrapped, self.device)
        if self._cuda:
            wrapped = AutocastModel(wrapped, "cuda")
        return wrapped

    def _load_data_to_device(self) -> None:
        """This rank's shard (every world_size-th example) of the training data, on device."""
        train = self.dataset.train[self.rank::self.world_size]
        if train.shape[0] == 0:
            raise ConfigError("train.dataset", self.config.train.dataset,
                              f"has no training examples for rank {self.rank}")
        self._train_x = train.to(self.device, torch.float32)
        if self._cuda and self.is_image:
            self._train_x = self._train_x.contiguous(memory_format=torch.channels_last)
        self._train_y = None
        if self.num_classes is not None:
            self._train_y = self.dataset.train_labels[self.rank::self.world_size].to(
                self.device, torch.long)

    def _seed_generators(self) -> None:
        """The step generator (on device) and the state of the model's dropout RNG."""
        seed = self.config.train.seed + _RANK_SEED_STRIDE * self.rank
        self._step_gen = torch.Generator(device=self.device).manual_seed(seed)
        self._dropout_state = torch.Generator(device=self.device).manual_seed(seed + 1).get_state()

    def reseed_generators(self, step: int) -> None:
        """Fresh generators for a resume on another device type (no exact continuation)."""
        seed = self.config.train.seed + _RANK_SEED_STRIDE * self.rank + 7 * step + 2
        self._step_gen.manual_seed(seed)
        self._dropout_state = torch.Generator(device=self.device).manual_seed(seed + 1).get_state()

    def generator_states(self) -> dict[str, torch.Tensor]:
        """uint8 CPU tensors: "step" (batch, t, noise, label dropout) and "dropout"."""
        return {"step": self._step_gen.get_state(), "dropout": self._dropout_state.clone()}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        self._step_gen.set_state(states["step"])
        self._dropout_state = states["dropout"].clone()

    def _make_probe_batch(self):
        """A fixed batch (up to probe_batch_size test examples) with fixed noise and labels."""
        source = self.dataset.test if self.dataset.test.shape[0] > 0 else self.dataset.train
        labels = self.dataset.test_labels if source is self.dataset.test else self.dataset.train_labels
        gen = torch.Generator().manual_seed(self.config.train.seed + _PROBE_SEED_OFFSET)
        count = min(probe_batch_size(math.prod(source.shape[1:])), source.shape[0])
        idx = torch.randperm(source.shape[0], generator=gen)[:count]
        x0 = source[idx].to(torch.float32)
        noise = torch.randn(x0.shape, generator=gen)
        y = labels[idx].long() if self.num_classes is not None and labels is not None else None
        return (x0.to(self.device), noise.to(self.device),
                None if y is None else y.to(self.device))

    # ------------------------------------------------------------------ the step
    def learning_rate(self, step: int) -> float:
        """Linear warm-up: lr * min(1, (step + 1) / warmup_steps)."""
        tc = self.config.train
        if tc.warmup_steps <= 0:
            return tc.lr
        return tc.lr * min(1.0, (step + 1) / tc.warmup_steps)

    def _draw_batch(self):
        """This step's random draws from the step generator, in a fixed order: indices,
        label dropout, t (and weights), noise. Returns (x0, kwargs, t, weights, noise)."""
        tc, gen, B = self.config.train, self._step_gen, self.batch_size
        idx = torch.randint(0, self._train_x.shape[0], (B,), generator=gen, device=self.device)
        x0 = self._train_x[idx]
        kwargs = {}
        if self._train_y is not None:
            y = self._train_y[idx]
            drop = torch.rand(B, generator=gen, device=self.device) < tc.label_dropout
            kwargs["y"] = torch.where(drop, torch.full_like(y, self.num_classes), y)
        t, weights = self.timestep_sampler.sample(B, gen)
        noise = torch.randn(x0.shape, generator=gen, device=self.device)
        if self._cuda and self.is_image:
            noise = noise.contiguous(memory_format=torch.channels_last)
        return x0, kwargs, t, weights, noise

    def _train_step(self) -> None:
        """Draw a batch, take core.train_step.train_step on it (eagerly, or as a replayed
        CUDA graph when the fast path takes it), then the host-side bookkeeping."""
        tc = self.config.train
        states_before = self.generator_states() if not self._deferred_checks else None
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x0, kwargs, t, weights, noise = self._draw_batch()
        batch = StepBatch(x0, t, weights, noise, kwargs.get("y"))
        self._ema_weight.fill_(1.0 - effective_decay(tc.ema_decay, self.step))

        def eager() -> tuple[torch.Tensor, torch.Tensor]:
            return self.eager_step(batch, states_before)

        raw, row = eager() if self.fast_step is None else self.fast_step.run(batch, eager)
        if self.world_size > 1 and self.config.diffusion.timestep_sampler != "uniform":
            # every rank sees every rank's losses, so the samplers stay identical
            self.timestep_sampler.update(distributed.all_gather_cat(t), distributed.all_gather_cat(raw))
        else:
            self.timestep_sampler.update(t, raw)
        self._rows[len(self._pending)] = row
        self.step += 1
        self._pending.append((self.step, lr))

    def eager_step(self, batch: StepBatch, states_before=None) -> tuple[torch.Tensor, torch.Tensor]:
        """train_step on `batch` with the training network, the model's own RNG state and
        the EMA lock; with states_before (per-step checks) a non-finite loss or gradient
        raises TrainingDiverged before the update. Returns (raw losses, metrics row)."""
        check = None
        if states_before is not None:
            def check(loss, grad_norm):
                self._check_finite_now(loss, grad_norm, states_before)
        with self._model_rng(), self._ema_lock:
            return self.step_on(batch, check)

    def step_on(self, batch: StepBatch, check=None) -> tuple[torch.Tensor, torch.Tensor]:
        """core.train_step.train_step with this trainer's network, diffusion, optimizer,
        EMA, EMA weight and grad_clip: the one step both paths run (a CUDA graph captures
        this call)."""
        tc = self.config.train
        return train_step(self._train_model, self.diffusion, self.optimizer, self._params,
                          self._ema, batch, self._ema_weight, tc.grad_clip, check, tc.micro_batch)

    @contextmanager
    def _model_rng(self):
        """Run the model's own random ops (dropout) on the trainer's saved RNG state."""
        if not self._uses_dropout:
            yield
            return
        saved = get_rng_state(self.device)
        set_rng_state(self.device, self._dropout_state)
        try:
            yield
        finally:
            self._dropout_state = get_rng_state(self.device)
            set_rng_state(self.device, saved)

    def _check_finite_now(self, loss, grad_norm, states_before) -> None:
        values = torch.stack([loss.detach().float(), grad_norm.float()]).cpu()
        for name, value in zip(("loss", "gradient norm"), values.tolist(), strict=True):
            if not math.isfinite(value):
                self.optimizer.zero_grad(set_to_none=True)
                self.set_generator_states(states_before)
                raise TrainingDiverged(self.step + 1, name, value, self.step)

    # ------------------------------------------------------------------ metrics
    def _flush(self, on_metrics) -> None:
        """Read the pending rows (one host sync), check them, append them to history."""
        count = len(self._pending)
        if count == 0:
            return
        values = self._rows[:count].cpu().numpy().astype(np.float64)
        now = time.perf_counter()
        elapsed = max(now - self._window_start, 1e-9)
        self._window_start = now
        samples_per_sec = count * self.batch_size * self.world_size / elapsed
        if self._deferred_checks:
            self._check_rows(values)
        rows = []
        for (step, lr), value in zip(self._pending, values, strict=True):
            row = {"step": step, "lr": lr, "samples_per_sec": samples_per_sec}
            row.update({key: float(v) for key, v in zip(_DEVICE_KEYS, value, strict=True)})
            rows.append(row)
            for key in HISTORY_KEYS:
                self.history[key].append(row[key])
        self._pending.clear()
        if self._deferred_checks:
            self._take_snapshot()
        if on_metrics is not None:
            on_metrics(rows)

    def _check_rows(self, values: np.ndarray) -> None:
        for (step, _), value in zip(self._pending, values, strict=True):
            for key in ("loss", "grad_norm"):
                v = value[_DEVICE_KEYS.index(key)]
                if not math.isfinite(v):
                    good = self._restore_snapshot()
                    self._pending.clear()
                    raise TrainingDiverged(step, "gradient norm" if key == "grad_norm" else key,
                                           float(v), good)

    # ------------------------------------------------------------------ rollback (deferred mode)
    def _live_tensors(self):
        weights = [*self.model.parameters(), *self.model.buffers(),
                   *self.ema_model.parameters(), *self.ema_model.buffers()]
        optimizer = []
        for param in self.model.parameters():
            state = self.optimizer.state.get(param, {})
            optimizer.extend(state[key] for key in sorted(state) if torch.is_tensor(state[key]))
        sampler = list(self.timestep_sampler.state_dict().values())
        return weights, optimizer, sampler

    @torch.no_grad()
    def _take_snapshot(self) -> None:
        weights, optimizer, sampler = self._live_tensors()
        old = self._snapshot
        if old is not None and len(old.optimizer) == len(optimizer):
            for saved, live in ((old.weights, weights), (old.optimizer, optimizer),
                                (old.sampler, sampler)):
                if saved:
                    torch._foreach_copy_(saved, [t.detach() for t in live])
            old.step = self.step
            old.generators = self.generator_states()
            return
        self._snapshot = _Snapshot(self.step, [t.detach().clone() for t in weights],
                                   [t.detach().clone() for t in optimizer],
                                   [t.detach().clone() for t in sampler], self.generator_states())

    @torch.no_grad()
    def _restore_snapshot(self) -> int:
        """Put back the last snapshot; returns its step."""
        snap = self._snapshot
        if snap is None:
            raise RuntimeError("no snapshot to roll back to")
        weights, optimizer, sampler = self._live_tensors()
        torch._foreach_copy_(weights, snap.weights)
        if len(snap.optimizer) == len(optimizer):
            if optimizer:
                torch._foreach_copy_(optimizer, snap.optimizer)
        else:
            self.optimizer.state.clear()
        if sampler:
            torch._foreach_copy_(sampler, snap.sampler)
        self.set_generator_states(snap.generators)
        self.optimizer.zero_grad(set_to_none=True)
        truncate = len([s for s in self.history["step"] if s <= snap.step])
        for key in HISTORY_KEYS:
            del self.history[key][truncate:]
        self.step = snap.step
        return snap.step

    # ------------------------------------------------------------------ public control
    def run(self, steps: int | None = None,
            on_metrics: Callable[[list[dict]], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_probe: Callable[[dict], None] | None = None) -> str:
        """Take `steps` more optimizer steps (None: until config.train.steps in total).

        should_stop() is polled before every step and before a probe (a probe due when a
        stop comes is taken after the next step instead); on_metrics(rows) gets the new per-step
        rows every log_every steps and at the end; on_probe(probe) follows each probe
        (every probe_every steps, and at the next step after request_probe()).
        Returns "finished", or "stopped" when should_stop() said so.
        Raises TrainingDiverged on a non-finite loss or gradient norm (last good weights kept).
        """
        tc = self.config.train
        if steps is None:
            steps = max(0, tc.steps - self.step)
        target = self.step + int(steps)
        self._pending.clear()
        if self._rows.shape[0] != tc.log_every:        # log_every changed between runs
            self._rows = torch.zeros(tc.log_every, len(_DEVICE_KEYS), device=self.device)
        self._window_start = time.perf_counter()
        if self._deferred_checks:
            self._take_snapshot()
        self.model.train()
        status = "finished"
        try:
            while self.step < target:
                if should_stop is not None and should_stop():
                    status = "stopped"
                    break
                self._train_step()
                if len(self._pending) >= tc.log_every:
                    self._flush(on_metrics)
                due = tc.probe_every > 0 and self.step % tc.probe_every == 0
                if due or self._probe_requested.is_set():
                    # every rank asks (under DDP should_stop is a collective: a call made
                    # by rank 0 alone waits forever for the others)
                    if should_stop is not None and should_stop():
                        self._probe_requested.set()   # a Stop is not kept waiting: the
                        status = "stopped"            # probe comes after the next step
                        break
                    if self.rank != 0:
                        continue
                    self._flush(on_metrics)
                    probe = self.probe()
                    if on_probe is not None:
                        on_probe(probe)
        except BaseException:
            self._flush_after_error(on_metrics)
            raise
        self._flush(on_metrics)
        return status

    def _flush_after_error(self, on_metrics) -> None:
        """A step raised (divergence, out of memory, Ctrl-C): the steps completed before it
        keep their history rows, so history stays one row per step. In deferred mode the
        read may itself find a non-finite row and roll back (TrainingDiverged)."""
        try:
            self._flush(on_metrics)
        except TrainingDiverged:
            raise
        except Exception:  # noqa: BLE001 - e.g. a broken CUDA context: keep the first error
            self._pending.clear()

    def request_probe(self) -> None:
        """Ask for a probe at the next step boundary (safe to call from another thread)."""
        self._probe_requested.set()

    def _eval_model(self) -> nn.Module:
        return AutocastModel(self.ema_model, "cuda") if self._cuda else self.ema_model

    @torch.no_grad()
    def probe(self) -> dict:
        """Per-t diagnostics of the EMA model on the fixed probe batch (core.probe): at
        probe_timesteps evenly spaced t, the loss, the VLB term, Analytic-DPM's Gamma_t and
        sigma*^2 (clipped with self.data_variance) and, for learned_range, the statistics
        of v and log Sigma_theta; float64 numpy (K,) arrays plus "step". Appended to
        probe_history."""
        self._probe_requested.clear()
        timesteps = probe_timesteps(self.diffusion.num_timesteps,
                                    self.config.train.probe_timesteps)
        x0, noise, y = self._probe_batch
        with self._ema_lock:
            result = probe_model(self._eval_model(), self.diffusion, x0, noise, y, timesteps,
                                 self.data_variance)
        result = {"step": self.step, **result}
        self.probe_history.append(result)
        return result

    def ema_snapshot(self) -> nn.Module:
        """A frozen copy of the EMA network (same device, eval mode) for sampling threads."""
        with self._ema_lock:
            return make_ema(self.ema_model)


def _data_variance(train: torch.Tensor, limit: int = 5000) -> float:
    """tr Cov(x_0) / D: the per-dimension variance of up to `limit` training examples, mean
    over dimensions (the Analytic-DPM clip's data term)."""
    count = min(limit, train.shape[0])
    return per_dimension_variance(train[:count].cpu()) if count >= 2 else 1.0


def _adamw(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all parameters) on CUDA and CPU where torch supports it."""
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
