"""GPU fast paths for the training step and the sampling step, with a clean eager fallback.

A PyTorch eager step launches every op from Python (~8 us of host time each); a UNet
training step issues thousands of kernels, so on a fast GPU the host, not the GPU, sets the
pace. The fast paths remove that launch overhead without changing the math:

- "graph": the whole training step after the data draw (forward, loss, backward, gradient
  clipping, fused AdamW, EMA, the metrics row) is captured once in a CUDA graph on static
  buffers and replayed, one launch per step. The random draws (indices, labels, t, noise)
  still come from the trainer's generators, eagerly, and are copied into the static
  buffers, so the random stream is the same as on the plain path. The learning rate is a
  constant of the graph, so the graph is captured once the warm-up ramp is over (and again
  whenever the lr or the optimizer state changes); the EMA decay, which changes every step,
  is a device scalar refilled before each replay.
- "compile": the network under torch.compile (mode "max-autotune-no-cudagraphs" by
  default, or "reduce-overhead"); the rest of the step eager.
- "compile+graph": the compiled network inside the captured graph.
- "eager": the trainer's own step (CPU, MPS, DDP, or when capture fails).

Every path runs the same diffusion code (core.diffusion) and the same optimizer, so the
numbers agree with the plain path up to floating-point reassociation; a captured graph is
checked once against the plain step on the same batch before it is used (`self_check`),
and any failure falls back to eager with the reason in `describe()`.

Sampling: `FastSampler` runs one reverse step (DDPM ancestral or DDIM) as a CUDA graph
replayed for every t: the step index lives on the device and the graph decrements it.

The Trainer calls `attach_default(trainer)` when it is built (a FastTrainStep on CUDA, None
elsewhere) and `FastTrainStep.step()` at the start of each step. The environment variable
DIFFUSION_EXPLORER_FAST_PATH ("auto", "eager", "graph", "compile", "compile+graph") picks
the path; "auto" is "graph" on CUDA (or "compile+graph" with train.compile) and "eager"
elsewhere.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

import core.diffusion as diffusion_module
from core.diffusion import GaussianDiffusion
from core.sampling import StepRecord
from core.schedule import space_timesteps

PATHS = ("eager", "compile", "graph", "compile+graph")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
DEFAULT_COMPILE_MODE = "max-autotune-no-cudagraphs"
ENV_VAR = "DIFFUSION_EXPLORER_FAST_PATH"
# plain steps run on a side stream before the first capture (cuDNN/cuBLAS set-up, lazy state)
CAPTURE_WARMUP_STEPS = 3
# graph vs plain step on the same batch: metrics and the size of the weight update
SELF_CHECK_RTOL = 2e-2


def requested_path(device: torch.device | str, compile_requested: bool = False) -> str:
    """The path named by $DIFFUSION_EXPLORER_FAST_PATH, or "auto": "graph" (or
    "compile+graph" when compile_requested) on CUDA, "eager" (or "compile") elsewhere."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value in ("off", "none", "plain"):
        value = "eager"
    if value != "auto" and value not in PATHS:
        raise ValueError(f"{ENV_VAR} = {value!r} is invalid: must be 'auto' or one of "
                         + ", ".join(repr(p) for p in PATHS))
    if value != "auto":
        return value
    cuda = torch.device(device).type == "cuda"
    if compile_requested:
        return "compile+graph" if cuda else "compile"
    return "graph" if cuda else "eager"


def attach_default(trainer) -> FastTrainStep | None:
    """The fast path the Trainer uses by default: a FastTrainStep on a single CUDA device
    (graph capture, see the module docstring), None on CPU/MPS/DDP or when the environment
    asks for eager, so the trainer's own step runs unchanged."""
    if trainer.device.type != "cuda" or trainer.world_size > 1:
        return None
    path = requested_path(trainer.device, bool(trainer.config.train.compile))
    if path == "eager":
        return None
    return FastTrainStep(trainer, path=path)


def describe_training_path(trainer) -> str:
    """One line for the UI: which code runs the trainer's steps."""
    fast = getattr(trainer, "fast_step", None)
    if fast is not None:
        return fast.describe()
    precision = "bf16 autocast" if trainer.device.type == "cuda" else "fp32"
    compiled = ", compiled" if trainer.config.train.compile else ""
    return f"eager ({trainer.device.type}, {precision}{compiled})"


# ---------------------------------------------------------------------------- device tables
class _DeviceTables:
    """Device-resident copies of a diffusion's schedule arrays, served to
    core.diffusion.extract while registered, so the diffusion math issues no host-to-device
    copy (forbidden inside a CUDA graph capture, and a host cost in every eager step).

    Values are identical to extract's own: the float64 array cast to float32, gathered at t.
    """

    _lock = threading.RLock()
    _active: dict[int, list] = {}          # id(array) -> [array, {(dtype, device): tensor}, refs]
    _original_extract = None

    @classmethod
    def _extract(cls, arr, t, shape, dtype=torch.float32):
        entry = cls._active.get(id(arr))
        if entry is not None and entry[0] is arr:
            table = entry[1].get((dtype, t.device))
            if table is not None:
                values = table[t]
                return values.reshape(values.shape + (1,) * (len(shape) - 1))
        return cls._original_extract(arr, t, shape, dtype)

    @classmethod
    def register(cls, arrays: Sequence[np.ndarray], device: torch.device) -> list[int]:
        with cls._lock:
            if cls._original_extract is None:
                cls._original_extract = diffusion_module.extract
            keys = []
            for arr in arrays:
                key = id(arr)
                entry = cls._active.setdefault(key, [arr, {}, 0])
                dtype_key = (torch.float32, device)
                if dtype_key not in entry[1]:
                    entry[1][dtype_key] = torch.from_numpy(np.asarray(arr)).to(
                        dtype=torch.float32).to(device)
                entry[2] += 1
                keys.append(key)
            diffusion_module.extract = cls._extract
            return keys

    @classmethod
    def unregister(cls, keys: list[int]) -> None:
        with cls._lock:
            for key in keys:
                entry = cls._active.get(key)
                if entry is None:
                    continue
                entry[2] -= 1
                if entry[2] <= 0:
                    del cls._active[key]
            if not cls._active and cls._original_extract is not None:
                diffusion_module.extract = cls._original_extract


def _schedule_arrays(diffusion: GaussianDiffusion) -> list[np.ndarray]:
    """Every float array the diffusion math gathers from (schedule and diffusion)."""
    arrays = []
    for owner in (diffusion.schedule, diffusion):
        for value in vars(owner).values():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim == 1:
                arrays.append(value)
    return arrays


@contextlib.contextmanager
def device_schedule(diffusion: GaussianDiffusion, device: torch.device | str):
    """Within the block, core.diffusion.extract and diffusion.model_timesteps read
    device-resident copies of the diffusion's arrays (same float32 values), so its math can
    be captured in a CUDA graph. Other diffusions and other arrays are unaffected."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    keys = _DeviceTables.register(_schedule_arrays(diffusion), device)
    timestep_table = torch.from_numpy(diffusion.schedule.timestep_map).to(device)
    had_own = "model_timesteps" in vars(diffusion)
    if not had_own:
        diffusion.model_timesteps = lambda t: timestep_table[t]
    try:
        yield
    finally:
        if not had_own:
            del diffusion.model_timesteps
        _DeviceTables.unregister(keys)


# ---------------------------------------------------------------------------- training
def _check_path_and_precision(path: str, precision: str) -> None:
    """ValueError naming the choices for a path (after "auto" is resolved) or precision
    that does not exist."""
    if path not in PATHS:
        raise ValueError(f"fast path {path!r} is invalid: must be 'auto' or one of "
                         + ", ".join(repr(p) for p in PATHS))
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is invalid: must be one of "
                         + ", ".join(repr(p) for p in PRECISIONS))


def _compile(model: nn.Module, mode: str) -> nn.Module:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is invalid: must be one of "
                         + ", ".join(repr(m) for m in COMPILE_MODES))
    return torch.compile(model, mode=None if mode == "default" else mode)


def _is_compiled(module: nn.Module) -> bool:
    return any(type(m).__name__ == "OptimizedModule" for m in module.modules())


def _agreement(row_a: np.ndarray, row_b: np.ndarray, delta_a: np.ndarray, delta_b: np.ndarray,
               rtol: float = SELF_CHECK_RTOL) -> str:
    """"" when two executions of one step agree, else what differs.

    row_*: the metrics rows (NaN where a quarter had no sample: NaN must match NaN).
    delta_*: per-tensor norms of the weight change (model, then EMA) made by the step; they
    agree when ||delta_a - delta_b|| <= rtol ||delta_b|| (a skipped optimizer or EMA update
    gives a relative error of 1).
    """
    row_a, row_b = np.asarray(row_a, np.float64), np.asarray(row_b, np.float64)
    if row_a.shape != row_b.shape:
        return f"metrics rows have shapes {row_a.shape} and {row_b.shape}"
    nan_a, nan_b = np.isnan(row_a), np.isnan(row_b)
    if (nan_a != nan_b).any():
        return "metrics rows differ in which entries are NaN"
    finite = ~nan_a
    close = np.abs(row_a[finite] - row_b[finite]) <= rtol * np.abs(row_b[finite]) + 1e-6
    if not close.all():
        return (f"metrics differ: {np.round(row_a[finite], 6).tolist()} vs "
                f"{np.round(row_b[finite], 6).tolist()}")
    delta_a, delta_b = np.asarray(delta_a, np.float64), np.asarray(delta_b, np.float64)
    scale = np.linalg.norm(delta_b)
    error = np.linalg.norm(delta_a - delta_b)
    if not np.isfinite(error) or error > rtol * scale + 1e-12:
        return f"weight updates differ by {error / max(scale, 1e-30):.3g} (relative)"
    return ""


class FastTrainStep:
    """Runs a Trainer's steps on a fast path (see the module docstring).

    Args:
        trainer: a core.training.Trainer (single process).
        path: "eager" | "compile" | "graph" | "compile+graph" | "auto".
        precision: "auto" (the trainer's: bf16 autocast on CUDA, fp32 elsewhere), "fp32"
            (TF32 where torch allows it) or "bf16" (autocast).
        compile_mode: torch.compile mode for the compile paths.
        self_check: compare the first replay of each new graph with the plain step.
        run_body_uncaptured: run the step body that a graph would capture, eagerly, every
            step (for tests on CPU; no graph).

    Attributes: `path` (requested), `active` (what runs now), `reason` (why a faster path
    is not used, "" if it is), `captures` (graphs captured so far).
    `step()` returns True when it took the step, False when the trainer must run its own.
    """

    def __init__(self, trainer, path: str = "auto", precision: str = "auto",
                 compile_mode: str = DEFAULT_COMPILE_MODE, self_check: bool = True,
                 run_body_uncaptured: bool = False):
        if path == "auto":
            path = requested_path(trainer.device, bool(trainer.config.train.compile))
        _check_path_and_precision(path, precision)
        self.trainer = trainer
        self.path = path
        self.precision = precision
        self.compile_mode = compile_mode
        self.self_check = self_check
        self.run_body_uncaptured = run_body_uncaptured
        self.reason = ""
        self.captures = 0
        previous = getattr(trainer, "fast_step", None)
        if previous is not None and previous is not self:
            previous.close()
        trainer.fast_step = self               # the trainer's step hook now calls this object
        self._original_train_model = trainer._train_model
        self._in_plain_step = False
        self._graph = None
        self._graph_signature = None
        self._static: dict[str, torch.Tensor] = {}
        self._warmup_done = 0
        self._side_stream = None
        self._ema_pairs = (list(trainer.ema_model.parameters()), list(trainer.model.parameters()))
        self._ema_buffer_pairs = (list(trainer.ema_model.buffers()), list(trainer.model.buffers()))
        self._set_train_model(path, precision, compile_mode)

        self.active = "eager"
        wants_graph = path in ("graph", "compile+graph")
        if wants_graph:
            if run_body_uncaptured:
                self.active = "graph-body"
            elif trainer.device.type != "cuda":
                self.reason = f"CUDA graphs need a CUDA device (training on {trainer.device.type})"
            elif trainer.world_size > 1:
                self.reason = "CUDA graph capture is not used with DDP"
            else:
                self.active = "graph"
        if self.active == "eager" and path in ("compile", "compile+graph"):
            self.active = "compile"

    # ------------------------------------------------------------------ set-up
    def _set_train_model(self, path: str, precision: str, compile_mode: str) -> None:
        """The network the step calls: the trainer's, re-wrapped for the precision and
        compiled for the compile paths (trainer.model stays the bare network)."""
        from core.training import AutocastModel

        tr = self.trainer
        device_type = tr.device.type
        default = "bf16" if device_type == "cuda" else "fp32"
        wanted = default if precision == "auto" else precision
        compiled = tr.config.train.compile
        if path in ("compile", "compile+graph") and not compiled:
            network = _compile(tr.model, compile_mode)
            compiled = True
        elif wanted == default and path not in ("compile", "compile+graph"):
            self.precision_used = wanted
            self.compiled = compiled
            return                                       # the trainer's own wrapping
        else:
            network = tr._train_model
            while isinstance(network, AutocastModel):
                network = network.model
        if tr.world_size > 1:
            raise ValueError("FastTrainStep changes the network only on a single process")
        tr._train_model = AutocastModel(network, device_type) if wanted == "bf16" else network
        self.precision_used = wanted
        self.compiled = compiled

    def close(self) -> None:
        """Drop the graph and give the trainer back its own network wrapper."""
        self._graph = None
        self._static = {}
        self.trainer._train_model = self._original_train_model
        if getattr(self.trainer, "fast_step", None) is self:
            self.trainer.fast_step = None

    def describe(self) -> str:
        """E.g. "CUDA graph (bf16 autocast, channels-last)" or "eager (cpu, fp32)"."""
        tr = self.trainer
        precision = "bf16 autocast" if self.precision_used == "bf16" else "fp32"
        details = [precision]
        if tr.device.type == "cuda" and tr.is_image:
            details.append("channels-last")
        if self.compiled:
            details.append("compiled")
        if self.active == "graph":
            waiting = self._graph is None and self.captures == 0
            head = "CUDA graph" + (" (captured after the lr warm-up)" if waiting else "")
        elif self.active == "graph-body":
            head = "graph body, uncaptured"
        elif self.active == "compile":
            head = f"torch.compile ({self.compile_mode})"
        else:
            head = f"eager ({tr.device.type})"
        text = f"{head}: {', '.join(details)}"
        if self.reason:
            text += f" [{self.reason}]"
        return text

    # ------------------------------------------------------------------ the step
    def step(self) -> bool:
        """Take one optimizer step on the fast path; False: the trainer's own step must run
        (eager and compile paths, the lr warm-up, or after a fallback)."""
        if self._in_plain_step or self.active not in ("graph", "graph-body"):
            return False
        tr = self.trainer
        if not self._lr_is_constant():
            return False
        if self.active == "graph-body":
            self._body_step_uncaptured()
            return True
        signature = self._signature()
        if self._graph is not None and signature == self._graph_signature:
            self._replay_step()
            return True
        self._graph = None
        if self._warmup_done < CAPTURE_WARMUP_STEPS:
            self._warmup_done += 1
            self._plain_step_on_side_stream()
            return True
        try:
            self._capture_and_step()
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
            self._graph = None
            self._static = {}
            self.active = "eager"
            self.reason = f"CUDA graph capture failed: {type(exc).__name__}: {exc}"[:300]
            tr.optimizer.zero_grad(set_to_none=True)
            return False
        return True

    def _lr_is_constant(self) -> bool:
        """The lr is a constant of a captured graph: only after the linear warm-up."""
        tr = self.trainer
        warmup = tr.config.train.warmup_steps
        return warmup <= 0 or tr.step + 1 >= warmup

    def _signature(self) -> tuple:
        """What a graph bakes in; a change means a new capture."""
        tr = self.trainer
        group = tr.optimizer.param_groups[0]
        first = tr.optimizer.state.get(tr._params[0], {}).get("exp_avg")
        last = tr.optimizer.state.get(tr._params[-1], {}).get("exp_avg")
        hyper = tuple((g["weight_decay"], tuple(g["betas"]), g["eps"])
                      for g in tr.optimizer.param_groups)
        return (tr.learning_rate(tr.step), hyper, group.get("amsgrad"), tr.config.train.grad_clip,
                tr.batch_size, id(first), id(last), id(tr._train_model), tr.model.training)

    def _plain_step(self) -> None:
        """The trainer's own step (this object steps aside while it runs)."""
        self._in_plain_step = True
        try:
            self.trainer._train_step()
        finally:
            self._in_plain_step = False

    def _plain_step_on_side_stream(self) -> None:
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(self.trainer.device)
        side = self._side_stream
        side.wait_stream(torch.cuda.current_stream(self.trainer.device))
        with torch.cuda.stream(side):
            self._plain_step()
        torch.cuda.current_stream(self.trainer.device).wait_stream(side)

    # -- the body a graph captures ---------------------------------------------------------
    def _fill_static(self) -> float:
        """Draw this step's batch with the trainer's generators into the static buffers;
        set the EMA weight. Returns the lr."""
        tr = self.trainer
        lr = tr.learning_rate(tr.step)
        for group in tr.optimizer.param_groups:
            group["lr"] = lr
        x0, kwargs, t, weights, noise = tr._draw_batch()
        fresh = {"x0": x0, "t": t, "weights": weights, "noise": noise}
        if "y" in kwargs:
            fresh["y"] = kwargs["y"]
        if not self._static:
            self._static = {k: v.clone() for k, v in fresh.items()}
            self._static["ema_weight"] = torch.zeros((), device=tr.device)
        else:
            for key, value in fresh.items():
                self._static[key].copy_(value)
        from core.ema import effective_decay

        self._static["ema_weight"].fill_(1.0 - effective_decay(tr.config.train.ema_decay, tr.step))
        return lr

    def _body(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss, backward, clipping, AdamW, EMA and the metrics row on the static buffers,
        with no host synchronisation and no Python-side state change (the code a graph
        captures). Returns (per-example raw losses (B,), metrics row (1, K))."""
        tr, s = self.trainer, self._static
        kwargs = {"y": s["y"]} if "y" in s else {}
        losses = tr.diffusion.training_losses(tr._train_model, s["x0"], s["t"], kwargs,
                                              noise=s["noise"])
        loss = (losses["loss"] * s["weights"]).mean()
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = tr.config.train.grad_clip if tr.config.train.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(tr._params, max_norm, foreach=True)
        tr.optimizer.step()
        with torch.no_grad():
            # ema <- ema + w (theta - ema), w = 1 - decay_n read from the device
            targets, sources = self._ema_pairs
            if targets:
                difference = torch._foreach_sub(sources, targets)
                torch._foreach_mul_(difference, s["ema_weight"])
                torch._foreach_add_(targets, difference)
            if self._ema_buffer_pairs[0]:
                torch._foreach_copy_(*self._ema_buffer_pairs)
        # the trainer writes its row at index len(_pending) of _rows: point both at a buffer
        row = torch.zeros(1, tr._rows.shape[1], device=tr.device)
        rows, pending = tr._rows, tr._pending
        tr._rows, tr._pending = row, []
        try:
            tr._record_row(loss.detach(), losses, s["weights"], s["t"], grad_norm)
        finally:
            tr._rows, tr._pending = rows, pending
        return losses["loss"].detach(), row

    def _finish(self, raw: torch.Tensor, row: torch.Tensor, lr: float) -> None:
        """The host-side end of a step: sampler update, metrics row, counters."""
        tr = self.trainer
        tr.timestep_sampler.update(self._static["t"], raw)
        tr._rows[len(tr._pending)].copy_(row[0])
        tr.step += 1
        tr._pending.append((tr.step, lr))

    def _body_step_uncaptured(self) -> None:
        tr = self.trainer
        states_before = tr.generator_states() if not tr._deferred_checks else None
        lr = self._fill_static()
        with tr._model_rng(), tr._ema_lock:
            raw, row = self._body()
        if not tr._deferred_checks:
            values = row[0, [0, 3]].cpu().tolist()
            for name, value in zip(("loss", "gradient norm"), values, strict=True):
                if not math.isfinite(value):
                    tr.set_generator_states(states_before)
                    raise RuntimeError(f"graph-body step: the {name} is {value}")
        self._finish(raw, row, lr)

    # -- capture and replay ------------------------------------------------------------------
    def _replay_step(self) -> None:
        tr = self.trainer
        lr = self._fill_static()
        with tr._ema_lock, tr._model_rng():
            self._graph.replay()
        self._finish(self._static["raw"], self._static["row"], lr)

    @torch.no_grad()
    def _check_replay(self, graph) -> str:
        """Replay once, measure, undo; then the plain step on the same batch (the real step).
        Returns "" when both agree, else what differs."""
        tr = self.trainer
        generators_before = tr.generator_states()
        dropout_before = tr._dropout_state.clone()
        weights, optimizer_state, _ = tr._live_tensors()
        saved = [t.detach().clone() for t in (*weights, *optimizer_state)]
        watched = [*self._ema_pairs[1], *self._ema_pairs[0]]
        before = [t.detach().clone() for t in watched]
        with tr._ema_lock, tr._model_rng():
            graph.replay()
        graph_row = self._static["row"][0].clone()
        graph_delta = torch.stack(torch._foreach_norm(torch._foreach_sub(watched, before)))
        torch._foreach_copy_([*weights, *optimizer_state], saved)
        tr.set_generator_states(generators_before)
        tr._dropout_state = dropout_before
        with torch.enable_grad():
            self._plain_step()                  # the real step (redraws the same batch)
        plain_row = tr._rows[len(tr._pending) - 1].clone()
        plain_delta = torch.stack(torch._foreach_norm(torch._foreach_sub(watched, before)))
        tr.optimizer.zero_grad(set_to_none=True)
        return _agreement(graph_row.cpu().numpy(), plain_row.cpu().numpy(),
                          graph_delta.cpu().numpy(), plain_delta.cpu().numpy())

    def _capture_and_step(self) -> None:
        tr = self.trainer
        device = tr.device
        generators_before = tr.generator_states()
        dropout_before = tr._dropout_state.clone()
        self._static = {}                       # fresh buffers: the graph owns them
        lr = self._fill_static()
        graph = torch.cuda.CUDAGraph()
        capturable = [g.get("capturable", False) for g in tr.optimizer.param_groups]
        for group in tr.optimizer.param_groups:
            group["capturable"] = True        # fused AdamW keeps its step counts on the device
        try:
            tr.optimizer.zero_grad(set_to_none=True)
            with device_schedule(tr.diffusion, device):
                side = torch.cuda.Stream(device)
                with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                    raw, row = self._body()
        except BaseException:
            # nothing ran (a capture only records); the plain step redraws this batch
            tr.set_generator_states(generators_before)
            tr._dropout_state = dropout_before
            raise
        finally:
            for group, flag in zip(tr.optimizer.param_groups, capturable, strict=True):
                group["capturable"] = flag
        self._static["raw"], self._static["row"] = raw, row
        self.captures += 1
        if not self.self_check:
            with tr._ema_lock, tr._model_rng():
                graph.replay()
            self._finish(raw, row, lr)
            self._graph, self._graph_signature = graph, self._signature()
            return
        # one replay, measured against the plain step on the same batch, then undone
        tr.set_generator_states(generators_before)
        tr._dropout_state = dropout_before
        problem = self._check_replay(graph)
        if problem:
            self.active = "eager"
            self.reason = f"CUDA graph self-check failed ({problem}); eager kept"
            self._static = {}
            return
        self._graph, self._graph_signature = graph, self._signature()


# ---------------------------------------------------------------------------- sampling
class FastSampler:
    """DDPM (ancestral) or DDIM sampling with one reverse step captured as a CUDA graph and
    replayed for every t (the index t lives on the device and the graph decrements it).

    The step is the one of core.sampling: p_mean_variance, then for DDPM
    x_{t-1} = mean + [t > 0] exp(log_variance / 2) z, for DDIM
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z
    with the per-step coefficients gathered from device tables (float32, as the eager
    step's Python scalars). Noise z comes from the caller's generator, drawn eagerly before
    each step exactly when the eager sampler draws it, so a seed gives the same sample on
    every path.

    Args: model (eval mode), diffusion (unrespaced), shape (N, ...) of the batch, sampler
    "ddpm" | "ddim", steps (None: T for ddpm, min(50, T) for ddim), eta, clip (None: images
    only), model_kwargs (static for the whole run, e.g. {"y": labels}), device,
    path "auto" | "eager" | "graph" | "compile+graph" ("compile" compiles without a graph),
    precision "fp32" | "bf16" | "auto" (bf16 on CUDA).
    Attributes: active ("graph", "eager", ...), reason, `describe()`.
    """

    def __init__(self, model: nn.Module, diffusion: GaussianDiffusion, shape: Sequence[int], *,
                 sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                 clip: bool | tuple | None = None, model_kwargs: dict | None = None,
                 device: torch.device | str = "cpu", path: str = "auto",
                 precision: str = "auto", compile_mode: str = DEFAULT_COMPILE_MODE):
        from core.training import AutocastModel

        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler = {sampler!r} is invalid: must be 'ddpm' or 'ddim'")
        if not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta = {eta!r} is invalid: must be a finite number >= 0")
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if path == "auto":
            path = "graph" if cuda else "eager"
        _check_path_and_precision(path, precision)
        T = diffusion.num_timesteps
        if steps is None:
            steps = T if sampler == "ddpm" else min(50, T)
        if not 1 <= int(steps) <= T:
            raise ValueError(f"steps = {steps!r} is invalid: must lie in [1, {T}]")
        self.diffusion = diffusion if steps == T else diffusion.respaced(
            space_timesteps(T, str(int(steps))))
        self.sampler = sampler
        self.eta = float(eta)
        self.shape = tuple(int(s) for s in shape)
        self.clip = self._device_clip(clip, diffusion)
        self.model_kwargs = dict(model_kwargs or {})
        self.precision_used = ("bf16" if cuda else "fp32") if precision == "auto" else precision
        self.compiled = path in ("compile", "compile+graph")
        network = _compile(model, compile_mode) if self.compiled else model
        self.model = (AutocastModel(network, self.device.type) if self.precision_used == "bf16"
                      else network)
        self.path = path
        self.reason = ""
        self.active = "eager"
        if path in ("graph", "compile+graph"):
            if cuda:
                self.active = "graph"
            else:
                self.reason = f"CUDA graphs need a CUDA device (sampling on {self.device.type})"
        self._graph = None
        self._checked = False
        self._static: dict[str, torch.Tensor] = {}
        self._build_tables()

    def _device_clip(self, clip, diffusion: GaussianDiffusion):
        """bool, or a (low, high) box as float32 device tensors made once here, so the
        captured step clamps without a host-to-device copy."""
        if clip is None:
            return diffusion.data_kind.value == "image"
        if isinstance(clip, (tuple, list)):
            return tuple(torch.as_tensor(np.asarray(bound, dtype=np.float32), device=self.device)
                         for bound in clip)
        return bool(clip)

    def _build_tables(self) -> None:
        """Per-step float32 device tables: DDIM coefficients and which steps draw noise."""
        s = self.diffusion.schedule
        S = self.diffusion.num_timesteps
        if self.sampler == "ddim":
            abar, abar_prev = s.alphas_cumprod, s.alphas_cumprod_prev
            sigma = (self.eta * np.sqrt((1.0 - abar_prev) / (1.0 - abar))
                     * np.sqrt(1.0 - abar / abar_prev))
            direction = np.sqrt(np.maximum(1.0 - abar_prev - sigma ** 2, 0.0))
            noisy = (np.arange(S) > 0) & (sigma > 0)
            self._noise_steps = noisy
            self._variance_host = np.where(noisy, sigma ** 2, 0.0)
            to = lambda a: torch.tensor(np.asarray(a, np.float64), dtype=torch.float32,  # noqa: E731
                                        device=self.device)
            self._tables = {"x0": to(np.sqrt(abar_prev)), "eps": to(direction),
                            "sigma": to(np.where(noisy, sigma, 0.0))}
        else:
            self._noise_steps = np.arange(S) > 0
            self._tables = {}
            self._variance_host = None

    def describe(self) -> str:
        head = {"graph": "CUDA graph", "eager": f"eager ({self.device.type})"}[self.active]
        details = ["bf16 autocast" if self.precision_used == "bf16" else "fp32"]
        if self.compiled:
            details.append("compiled")
        text = f"{head}: {', '.join(details)}"
        return text + (f" [{self.reason}]" if self.reason else "")

    # ------------------------------------------------------------------ one step
    def _step_math(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None):
        """(x_prev, pred_x0, pred_eps, variance) at the step indices t (B,)."""
        out = self.diffusion.p_mean_variance(self.model, x, t, self.model_kwargs,
                                             clip_denoised=self.clip)
        view = (-1,) + (1,) * (x.ndim - 1)
        if self.sampler == "ddpm":
            sample = out["mean"]
            if noise is not None:
                nonzero = (t != 0).to(x.dtype).reshape(view)
                sample = sample + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
            return sample, out["pred_xstart"], out["pred_eps"], out["variance"]
        tables = self._tables
        sample = (tables["x0"][t].reshape(view) * out["pred_xstart"]
                  + tables["eps"][t].reshape(view) * out["pred_eps"])
        if noise is not None:
            sample = sample + tables["sigma"][t].reshape(view) * noise
        return sample, out["pred_xstart"], out["pred_eps"], out["variance"]

    def _draw_noise(self, generator: torch.Generator | None) -> torch.Tensor:
        """N(0, I) like core.sampling: drawn on the generator's device, then moved."""
        draw_device = generator.device if generator is not None else self.device
        return torch.randn(self.shape, generator=generator, device=draw_device,
                           dtype=torch.float32).to(self.device)

    def _needs_noise_input(self) -> bool:
        return bool(self._noise_steps.any())

    def _variance_value(self, step: int, variance: torch.Tensor) -> float:
        if self.sampler == "ddim":
            return float(self._variance_host[step])
        return float(variance.mean()) if step > 0 else 0.0

    # ------------------------------------------------------------------ runs
    @torch.no_grad()
    def warm_up(self) -> None:
        """Capture the graph now (one step on a throw-away batch), so the first real run
        does not pay for it; eager paths just run that step."""
        x = torch.zeros(self.shape, device=self.device)
        noise = torch.zeros(self.shape, device=self.device)
        step = self.diffusion.num_timesteps - 1
        if self.active == "graph":
            try:
                self._graph_step(x, step, noise if self._noise_steps[step] else None)
                return
            except Exception as exc:  # noqa: BLE001
                self.active, self._graph = "eager", None
                self.reason = f"CUDA graph capture failed: {type(exc).__name__}: {exc}"[:300]
        t = torch.full((self.shape[0],), step, device=self.device, dtype=torch.long)
        self._step_math(x, t, noise if self._noise_steps[step] else None)

    @torch.no_grad()
    def records(self, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Iterator[StepRecord]:
        """One StepRecord per step T-1..0 (copies of the static buffers), like
        core.sampling.ddpm_sample / ddim_sample. x_T is `noise` or drawn from generator."""
        x = self._initial(noise, generator)
        for step in reversed(range(self.diffusion.num_timesteps)):
            x, pred_x0, pred_eps, variance = self._advance(x, step, generator)
            yield StepRecord(step, x.clone(), pred_x0.clone(), pred_eps.clone(),
                             self._variance_value(step, variance))

    @torch.no_grad()
    def sample(self, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The final sample x_0 (a new tensor of `shape`)."""
        x = self._initial(noise, generator)
        for step in reversed(range(self.diffusion.num_timesteps)):
            x = self._advance(x, step, generator)[0]
        return x.clone()

    def _initial(self, noise, generator) -> torch.Tensor:
        if noise is not None:
            if tuple(noise.shape) != self.shape:
                raise ValueError(f"noise shape {tuple(noise.shape)} must equal shape {self.shape}")
            x = noise.to(self.device, torch.float32)
        else:
            x = self._draw_noise(generator)
        return x

    def _advance(self, x: torch.Tensor, step: int, generator):
        """One reverse step from index `step` (eager or replayed)."""
        noise = self._draw_noise(generator) if self._noise_steps[step] else None
        if self.active == "graph":
            try:
                return self._graph_step(x, step, noise)
            except Exception as exc:  # noqa: BLE001 - fall back to eager for the rest
                self.active = "eager"
                self._graph = None
                self.reason = f"CUDA graph capture failed: {type(exc).__name__}: {exc}"[:300]
        t = torch.full((self.shape[0],), step, device=self.device, dtype=torch.long)
        return self._step_math(x, t, noise)

    def _graph_step(self, x: torch.Tensor, step: int, noise: torch.Tensor | None):
        if self._graph is None:
            self._capture(x, step)
        s = self._static
        if x is not s["x"]:
            s["x"].copy_(x)
        s["t"].fill_(step)
        if noise is not None:
            s["noise"].copy_(noise)
        if not self._checked:
            self._check_against_eager(x.clone(), step, noise)
        self._graph.replay()
        return s["x"], s["pred_x0"], s["pred_eps"], s["variance"]

    def _check_against_eager(self, x: torch.Tensor, step: int, noise) -> None:
        """The first replay must agree with the eager step on the same input (else eager)."""
        self._checked = True
        t = torch.full((self.shape[0],), step, device=self.device, dtype=torch.long)
        expected = self._step_math(x, t, noise)[1].float()
        self._graph.replay()
        got = self._static["pred_x0"].float()
        self._static["x"].copy_(x)                 # undo the replay's update of x
        error = (got - expected).abs().max().item()
        scale = expected.abs().max().item()
        if not math.isfinite(error) or error > SELF_CHECK_RTOL * max(scale, 1.0):
            raise RuntimeError(f"self-check: the replayed step differs from eager by {error:.3g}")

    def _graph_body(self) -> None:
        """The captured code: one step from the static x, t (and noise) into the static
        outputs, x overwritten by x_prev."""
        s = self._static
        sample, pred_x0, pred_eps, variance = self._step_math(
            s["x"], s["t"], s["noise"] if self._needs_noise_input() else None)
        s["pred_x0"], s["pred_eps"], s["variance"] = pred_x0, pred_eps, variance
        s["x"].copy_(sample)

    def _capture(self, x: torch.Tensor, step: int) -> None:
        self._static = {"x": x.detach().clone(),
                        "t": torch.full((self.shape[0],), step, device=self.device,
                                        dtype=torch.long),
                        "noise": torch.zeros(self.shape, device=self.device)}
        s = self._static
        side = torch.cuda.Stream(self.device)
        with device_schedule(self.diffusion, self.device):
            # after the tables' copies: the side stream must see them
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):                    # warm-up: cuDNN/cuBLAS set-up, compile
                    self._step_math(s["x"], s["t"],
                                    s["noise"] if self._needs_noise_input() else None)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                    self._graph_body()
            except BaseException:
                self._static = {}
                raise
        self._graph = graph


def sample_records(model: nn.Module, diffusion: GaussianDiffusion, shape: Sequence[int], *,
                   sampler: str, eta: float = 0.0, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, device="cpu",
                   clip_denoised: bool | tuple | None = None,
                   model_kwargs: dict | None = None) -> Iterator[StepRecord] | None:
    """core.sampling's ddpm_sample / ddim_sample over every index of `diffusion` on the
    CUDA-graph path (fp32, the model as given), or None where that path does not apply (not
    CUDA, or $DIFFUSION_EXPLORER_FAST_PATH says eager): the caller then runs core.sampling."""
    device = torch.device(device)
    if device.type != "cuda" or requested_path(device) == "eager":
        return None
    fast = FastSampler(model, diffusion, shape, sampler=sampler,
                       steps=diffusion.num_timesteps, eta=eta, clip=clip_denoised,
                       model_kwargs=model_kwargs, device=device, path="graph", precision="fp32")
    return fast.records(noise=noise, generator=generator)
