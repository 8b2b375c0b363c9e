"""GPU fast paths, the shared machinery: which path runs (eager, graph, compile), capturing a
step as a CUDA graph, and the sampler's step runner. No diffusion math lives here: a graph
replays the very function the eager path calls (a SamplerRun's `step`, core.samplers;
training: `Trainer.step_on`, driven by core.fast_train).

An eager step launches every op from Python (~8 us of host time each; a UNet training step
issues thousands), so on a fast GPU the host sets the pace; a replayed graph is one launch.
Sampling: one reverse step is captured and replayed for every t; the step index t lives in
a static device tensor refilled before each replay, and every per-step value the step needs
is gathered from device tables by t. A new graph's first replay is checked against the eager
step on the same input, and any capture failure or disagreement falls back to eager with
the reason (`reason`, `describe()`).

$DIFFUSION_EXPLORER_FAST_PATH ("auto", "eager", "graph", "compile", "compile+graph") picks
the training path; "auto" is "graph" on CUDA (or "compile+graph" with train.compile) and
"eager" elsewhere. "eager" also keeps sampling off the graph.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from core.samplers.base import SamplerRun, StepOutput

PATHS = ("eager", "compile", "graph", "compile+graph")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
DEFAULT_COMPILE_MODE = "max-autotune-no-cudagraphs"
ENV_VAR = "DIFFUSION_EXPLORER_FAST_PATH"
# plain steps run on a side stream before the first capture (cuDNN/cuBLAS set-up, lazy state)
CAPTURE_WARMUP_STEPS = 3
SAMPLER_WARMUP_STEPS = 2
# a replayed step against the eager one on the same input (relative)
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


def check_path_and_precision(path: str, precision: str) -> None:
    """ValueError naming the choices for a path (after "auto" is resolved) or precision
    that does not exist."""
    if path not in PATHS:
        raise ValueError(f"fast path {path!r} is invalid: must be 'auto' or one of "
                         + ", ".join(repr(p) for p in PATHS))
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is invalid: must be one of "
                         + ", ".join(repr(p) for p in PRECISIONS))


GRAPHED_COMPILE_MODES = ("reduce-overhead", "max-autotune")   # use CUDA graphs themselves


def check_compile_mode(path: str, mode: str) -> None:
    """A compile mode that captures CUDA graphs of its own cannot run inside our capture
    (a capture within a capture): ValueError naming the combination."""
    if path == "compile+graph" and mode in GRAPHED_COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} captures CUDA graphs itself and cannot run "
                         f"inside the 'compile+graph' path; use 'max-autotune-no-cudagraphs' "
                         f"or 'default' there, or the 'compile' path alone")


def compile_network(model: nn.Module, mode: str) -> nn.Module:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is invalid: must be one of "
                         + ", ".join(repr(m) for m in COMPILE_MODES))
    return torch.compile(model, mode=None if mode == "default" else mode)


def capture_graph(body: Callable[[], object], device: torch.device,
                  warm_up: Callable[[], object] | None = None, warmups: int = 0, stream=None):
    """(graph, body's return value): `warm_up` run `warmups` times on a side stream (or on
    `stream`, the one earlier warm-ups ran on), then `body` captured on that same stream
    (error mode "thread_local": other threads may keep running)."""
    side = stream if stream is not None else torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    if warm_up is not None and warmups:
        with torch.cuda.stream(side):
            for _ in range(warmups):
                warm_up()
        torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
        result = body()
    return graph, result


def failure(exc: BaseException) -> str:
    return f"CUDA graph capture failed: {type(exc).__name__}: {exc}"[:300]


# ---------------------------------------------------------------------------- sampling
class StepRunner:
    """Runs a SamplerRun's step for step index `step`: eagerly, or captured as CUDA graphs
    and replayed (path "graph" on a CUDA device; "auto": graph on CUDA unless
    $DIFFUSION_EXPLORER_FAST_PATH says eager). A run has one graph per step variant
    (`SamplerRun.variant`, e.g. a first-order last step), captured when first needed and
    checked against the eager step on its first replay; a run's state (multistep history)
    is put back around warm-ups and checks. A capture failure or a mismatch switches to
    eager for good, with `reason`.

    Call: runner(x (B, ...), step, noise or None, copy=True) -> StepOutput; with copy=False
    a graph's outputs are its static buffers, overwritten by the next call.
    """

    def __init__(self, run: SamplerRun, shape: Sequence[int], path: str = "auto"):
        self.run = run
        self.shape = tuple(int(s) for s in shape)
        cuda = run.device.type == "cuda"
        if path == "auto":
            path = "graph" if cuda and requested_path(run.device) != "eager" else "eager"
        if path not in ("eager", "graph"):
            raise ValueError(f"path {path!r} is invalid: must be 'auto', 'eager' or 'graph'")
        self.active, self.reason = "eager", ""
        if path == "graph":
            if not cuda:
                self.reason = f"CUDA graphs need a CUDA device (sampling on {run.device.type})"
            elif not run.capturable:
                self.reason = "this sampler chooses its steps as it goes: not capturable"
            else:
                self.active = "graph"
        self._graphs: dict = {}
        self._outputs: dict = {}
        self._checked: set = set()
        self._static: dict[str, torch.Tensor] = {}
        self._variant = 0
        self._noisy = bool(np.any(run.noise_steps))

    def __call__(self, x: torch.Tensor, step: int, noise: torch.Tensor | None,
                 copy: bool = True) -> StepOutput:
        if self.active == "graph":
            try:
                out = self._graph_step(x, step, noise)
                return StepOutput(*(t.clone() for t in out)) if copy else out
            except Exception as exc:  # noqa: BLE001 - fall back to eager for the rest
                self.active, self._graphs, self.reason = "eager", {}, failure(exc)
        return self.eager(x, step, noise)

    def describe(self) -> str:
        """Which code runs the steps: "CUDA graph" or "eager (cpu)", with the reason of a
        fallback in brackets."""
        head = "CUDA graph" if self.active == "graph" else f"eager ({self.run.device.type})"
        return head + (f" [{self.reason}]" if self.reason else "")

    def eager(self, x: torch.Tensor, step: int, noise: torch.Tensor | None) -> StepOutput:
        t = torch.full((self.shape[0],), step, device=self.run.device, dtype=torch.long)
        return self.run.step(x, t, noise, self.run.variant(step))

    @torch.no_grad()
    def warm_up(self) -> None:
        """Capture now (one step on a throw-away batch), so the first real run does not pay
        for it; the eager path just runs that step."""
        x = torch.zeros(self.shape, device=self.run.device)
        self.run.start(x)
        step = self.run.num_steps - 1
        noise = torch.zeros(self.shape, device=self.run.device) if self._noisy else None
        self(x, step, noise if self.run.noise_steps[step] else None, copy=False)

    def _graph_step(self, x: torch.Tensor, step: int, noise: torch.Tensor | None) -> StepOutput:
        variant = self.run.variant(step)
        if not self._static:
            device = self.run.device
            self._static = {"x": x.detach().clone(),
                            "t": torch.full((self.shape[0],), step, device=device,
                                            dtype=torch.long),
                            "noise": torch.zeros(self.shape, device=device)}
        s = self._static
        if x is not s["x"]:
            s["x"].copy_(x)
        s["t"].fill_(step)
        if noise is not None:
            s["noise"].copy_(noise)
        self._variant = variant
        if variant not in self._graphs:
            self._capture(variant)
        if variant not in self._checked:
            self._check_against_eager(s["x"].clone(), step, noise, variant)
        self._graphs[variant].replay()
        out = self._outputs[variant]
        return StepOutput(s["x"], out["pred_x0"], out["pred_eps"], out["variance"])

    def _graph_body(self, variant=0) -> None:
        """The captured code: one step from the static x, t (and noise) into the variant's
        static outputs, x overwritten by x_prev. A run adds no noise at steps whose
        noise_steps is False, so a stale noise buffer there is harmless."""
        s = self._static
        out = self.run.step(s["x"], s["t"], s["noise"] if self._noisy else None, variant)
        self._outputs[variant] = {"pred_x0": out.pred_x0, "pred_eps": out.pred_eps,
                                  "variance": out.variance}
        s["x"].copy_(out.x_prev)

    def _kept_state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tensor, copy) of x and the run's state, to put back after work that must leave
        no trace (warm-ups, the check)."""
        return [(t, t.detach().clone()) for t in (self._static["x"], *self.run.state_tensors())]

    @staticmethod
    def _put_back(kept) -> None:
        for tensor, copy in kept:
            tensor.copy_(copy)

    def _capture(self, variant) -> None:
        s = self._static
        kept = self._kept_state()
        try:
            self._graphs[variant], _ = capture_graph(
                lambda: self._graph_body(variant), self.run.device,
                warm_up=lambda: self.run.step(s["x"], s["t"], s["noise"] if self._noisy else None,
                                              variant),
                warmups=SAMPLER_WARMUP_STEPS)
        finally:
            self._put_back(kept)

    def _check_against_eager(self, x: torch.Tensor, step: int, noise, variant) -> None:
        """The first replay of a variant must agree with the eager step on the same input
        (else eager); both leave x and the run's state as they were."""
        self._checked.add(variant)
        kept = self._kept_state()
        expected = self.eager(x, step, noise).pred_x0.float()
        self._put_back(kept)
        self._graphs[variant].replay()
        got = self._outputs[variant]["pred_x0"].float()
        error = (got - expected).abs().max().item()
        scale = expected.abs().max().item()
        self._put_back(kept)
        if not math.isfinite(error) or error > SELF_CHECK_RTOL * max(scale, 1.0):
            raise RuntimeError(f"self-check: the replayed step differs from eager by {error:.3g}")


def step_runner(run: SamplerRun, shape: Sequence[int], path: str = "auto") -> StepRunner:
    """The StepRunner of `run` for batches of `shape` on `path` ("auto", "eager", "graph")."""
    return StepRunner(run, shape, path)
