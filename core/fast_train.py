"""The GPU fast path of training: the trainer's step captured once as a CUDA graph and
replayed (core.fast_step has the shared machinery), torch.compile, and the eager fallback.

The graph holds the whole step after the data draw (forward, loss, backward, gradient
clipping, fused AdamW, EMA, the metrics row: `Trainer.step_on`, i.e.
core.train_step.train_step) on static buffers. The random draws still come from the
trainer's generators, eagerly, and are copied into the buffers, so the random stream is the
same as on the eager path. The learning rate is a constant of the graph: it is captured once
the lr warm-up is over, after CAPTURE_WARMUP_STEPS eager steps on the side stream it is
captured on, and again (after new warm-ups) whenever the lr, the optimizer state or the
network changes. Its first replay is checked against the eager step on the same batch and
the same dropout RNG state, then undone; a failure keeps eager, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from core.device import AutocastModel, unwrap_autocast
from core.fast_step import (
    CAPTURE_WARMUP_STEPS,
    DEFAULT_COMPILE_MODE,
    SELF_CHECK_RTOL,
    capture_graph,
    check_compile_mode,
    check_path_and_precision,
    compile_network,
    failure,
    requested_path,
)
from core.train_step import StepBatch


def agreement(row_a: np.ndarray, row_b: np.ndarray, delta_a: np.ndarray, delta_b: np.ndarray,
              rtol: float = SELF_CHECK_RTOL) -> str:
    """"" when two executions of one training step agree, else what differs.

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



def attach_default(trainer) -> FastTrainStep | None:
    """The fast path the Trainer uses by default: a FastTrainStep on a single CUDA device
    (graph capture), None on CPU/MPS/DDP or when the environment asks for eager, so the
    trainer's own step runs unchanged."""
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


class FastTrainStep:
    """Runs a Trainer's steps on a fast path (see the module docstring).

    Args:
        trainer: a core.training.Trainer (single process).
        path: "eager" | "compile" | "graph" | "compile+graph" | "auto".
        precision: "auto" (the trainer's: bf16 autocast on CUDA, fp32 elsewhere), "fp32"
            (TF32 where torch allows it) or "bf16" (autocast).
        compile_mode: torch.compile mode for the compile paths.
        self_check: compare the first replay of each new graph with the eager step.
        run_body_uncaptured: run the step body that a graph would capture, eagerly, every
            step (for tests on CPU; no graph).

    Attributes: `path` (requested), `active` (what runs now), `reason` (why a faster path
    is not used, "" if it is), `captures` (graphs captured so far).
    `run(batch, eager)` takes the trainer's step on `batch` and returns (raw losses, row);
    `eager()` is the trainer's own step on that batch, used wherever no graph applies.
    """

    def __init__(self, trainer, path: str = "auto", precision: str = "auto",
                 compile_mode: str = DEFAULT_COMPILE_MODE, self_check: bool = True,
                 run_body_uncaptured: bool = False):
        if path == "auto":
            path = requested_path(trainer.device, bool(trainer.config.train.compile))
        check_path_and_precision(path, precision)
        check_compile_mode(path, compile_mode)
        self.trainer = trainer
        self.path = path
        self.precision = precision
        self.compile_mode = compile_mode
        self.self_check = self_check
        self.reason = ""
        self.captures = 0
        previous = getattr(trainer, "fast_step", None)
        if previous is not None and previous is not self:
            previous.close()
        trainer.fast_step = self               # the trainer's step now goes through run()
        self._original_train_model = trainer._train_model
        self._graph = None
        self._graph_signature = None
        self._static: dict[str, torch.Tensor] = {}
        self._warmup_done = 0
        self._side_stream = None
        self._set_train_model(path, precision, compile_mode)

        self.active = "eager"
        if path in ("graph", "compile+graph"):
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
        tr = self.trainer
        default = "bf16" if tr.device.type == "cuda" else "fp32"
        wanted = default if precision == "auto" else precision
        compiled = tr.config.train.compile
        if path in ("compile", "compile+graph") and not compiled:
            network = compile_network(tr.model, compile_mode)
            compiled = True
        elif wanted == default and path not in ("compile", "compile+graph"):
            self.precision_used, self.compiled = wanted, compiled
            return                                       # the trainer's own wrapping
        else:
            network = unwrap_autocast(tr._train_model)
        if tr.world_size > 1:
            raise ValueError("FastTrainStep changes the network only on a single process")
        tr._train_model = AutocastModel(network, tr.device.type) if wanted == "bf16" else network
        self.precision_used, self.compiled = wanted, compiled

    def close(self) -> None:
        """Drop the graph and give the trainer back its own network wrapper."""
        self._graph = None
        self._static = {}
        self.trainer._train_model = self._original_train_model
        if getattr(self.trainer, "fast_step", None) is self:
            self.trainer.fast_step = None

    def describe(self) -> str:
        """E.g. "CUDA graph: bf16 autocast, channels-last" or "eager (cpu): fp32"."""
        tr = self.trainer
        details = ["bf16 autocast" if self.precision_used == "bf16" else "fp32"]
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
        return text + (f" [{self.reason}]" if self.reason else "")

    # ------------------------------------------------------------------ the step
    def run(self, batch, eager: Callable[[], tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        """The step on `batch`: replayed, captured (after warm-up steps on a side stream),
        or `eager()` (eager and compile paths, the lr warm-up, or after a fallback)."""
        if self.active not in ("graph", "graph-body") or not self._lr_is_constant():
            return eager()
        tr = self.trainer
        if self.active == "graph-body":
            self._fill(batch)
            with tr._model_rng(), tr._ema_lock:
                return self._body()
        if self._graph is not None and self._signature() == self._graph_signature:
            self._fill(batch)
            with tr._ema_lock, tr._model_rng():
                self._graph.replay()
            return self._static["raw"], self._static["row"]
        if self._graph is not None or self._graph_signature is not None:
            # the graph no longer fits (new lr, optimizer state or network): warm up again on
            # the side stream before the next capture (cuDNN/cuBLAS plans, compiled code)
            self._graph, self._graph_signature, self._warmup_done = None, None, 0
        if self._warmup_done < CAPTURE_WARMUP_STEPS:
            self._warmup_done += 1
            return self._on_side_stream(eager)
        try:
            return self._capture_and_step(batch, eager)
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
            self._graph, self._static, self.active = None, {}, "eager"
            self.reason = failure(exc)
            tr.optimizer.zero_grad(set_to_none=True)
            return eager()

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
                tr.batch_size, tr.config.train.micro_batch, tr.config.model.checkpointing,
                id(first), id(last), id(tr._train_model), tr.model.training)

    def _stream(self):
        """The side stream of this fast step's warm-ups and captures (one for its life)."""
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(self.trainer.device)
        return self._side_stream

    def _on_side_stream(self, eager: Callable[[], tuple]):
        side = self._stream()
        side.wait_stream(torch.cuda.current_stream(self.trainer.device))
        with torch.cuda.stream(side):
            result = eager()
        torch.cuda.current_stream(self.trainer.device).wait_stream(side)
        return result

    def _fill(self, batch) -> None:
        """Copy this step's batch into the static buffers (made on first use)."""
        fresh = {name: value for name, value in batch._asdict().items() if value is not None}
        if not self._static:
            self._static = {k: v.clone() for k, v in fresh.items()}
        else:
            for key, value in fresh.items():
                self._static[key].copy_(value)

    def _body(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The code a graph captures: the trainer's step on the static buffers."""
        s = self._static
        return self.trainer.step_on(StepBatch(s["x0"], s["t"], s["weights"], s["noise"],
                                              s.get("y")))

    # -- capture and replay ------------------------------------------------------------------
    def _capture_and_step(self, batch, eager: Callable[[], tuple]):
        tr = self.trainer
        self._static = {}                       # fresh buffers: the graph owns them
        self._fill(batch)
        capturable = [g.get("capturable", False) for g in tr.optimizer.param_groups]
        for group in tr.optimizer.param_groups:
            group["capturable"] = True        # fused AdamW keeps its step counts on the device
        try:
            tr.optimizer.zero_grad(set_to_none=True)
            graph, (raw, row) = capture_graph(self._body, tr.device,
                                              stream=self._stream())
        finally:
            for group, flag in zip(tr.optimizer.param_groups, capturable, strict=True):
                group["capturable"] = flag
        self._static["raw"], self._static["row"] = raw, row
        self.captures += 1
        if not self.self_check:
            with tr._ema_lock, tr._model_rng():
                graph.replay()
            self._graph, self._graph_signature = graph, self._signature()
            return raw, row
        problem, result = self._check_replay(graph, eager)
        if problem:
            self.active = "eager"
            self.reason = f"CUDA graph self-check failed ({problem}); eager kept"
            self._static = {}
            return result
        self._graph, self._graph_signature = graph, self._signature()
        return result

    @torch.no_grad()
    def _check_replay(self, graph, eager: Callable[[], tuple]):
        """Replay once, measure, undo; then the eager step on the same batch (the real step).
        Returns ("" when both agree, else what differs; the eager step's result)."""
        tr = self.trainer
        dropout_before = tr._dropout_state.clone()
        weights, optimizer_state, _ = tr._live_tensors()
        saved = [t.detach().clone() for t in (*weights, *optimizer_state)]
        watched = [*tr.model.parameters(), *tr.ema_model.parameters()]
        before = [t.detach().clone() for t in watched]
        with tr._ema_lock, tr._model_rng():
            graph.replay()
        graph_row = self._static["row"].clone()
        graph_delta = torch.stack(torch._foreach_norm(torch._foreach_sub(watched, before)))
        torch._foreach_copy_([*weights, *optimizer_state], saved)
        tr._dropout_state = dropout_before
        with torch.enable_grad():
            raw, row = eager()                  # the real step, on the same batch
        plain_delta = torch.stack(torch._foreach_norm(torch._foreach_sub(watched, before)))
        tr.optimizer.zero_grad(set_to_none=True)
        problem = agreement(graph_row.cpu().numpy(), row.cpu().numpy(),
                            graph_delta.cpu().numpy(), plain_delta.cpu().numpy())
        return problem, (raw, row)
