"""What the app tells a user about the time a run or a sample will take: warnings from
core.cost's estimate before anything starts, and the estimate the first steps measure.
Texts only (the numbers come from core.cost and the run's own progress)."""

from __future__ import annotations

import math

from core.cost import CostEstimate, format_flops

SLOW_RUN_SECONDS = 2 * 3600      # a run estimated to take longer than this gets a warning
SLOW_SAMPLE_SECONDS = 120        # so does a sampling request
CPU_PRESET = "mnist-cpu"         # the preset made for CPUs (resources/presets)
IMAGE_SAMPLES = 36               # the Trajectories panel's default count for images
POINT_SAMPLES = 500              # ... and for 2-D points


def format_duration(seconds: float) -> str:
    """H:MM:SS, or M:SS below an hour; "–" when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_long(seconds: float) -> str:
    """A rough duration in words: "40 s", "12 min", "5.7 h", "6.5 days"."""
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_step_time(seconds: float) -> str:
    """Seconds per step, readable at any speed: "8.5 s", "0.12 s", "3 ms"."""
    if seconds >= 1:
        return f"{seconds:.1f} s"
    if seconds >= 0.01:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def device_words(device_type: str) -> str:
    return {"cpu": "this CPU", "cuda": "this GPU", "mps": "this Apple GPU"}.get(
        device_type, device_type)


def training_warning(estimate: CostEstimate | None, steps: int, image_data: bool,
                     presets: list[str] | tuple[str, ...] = ()) -> str:
    """"" when the run fits the device; otherwise what it would cost and what to do
    instead (it never stops anyone from starting)."""
    if estimate is None:
        return ""
    seconds = estimate.train_seconds(steps)
    if seconds < SLOW_RUN_SECONDS:
        return ""
    per_step = estimate.train_step_seconds()
    text = (f"Far too big for {device_words(estimate.device_type)}: about "
            f"{format_step_time(per_step)} per training step, so {steps:,} steps would take "
            f"about {format_long(seconds)} (an estimate from "
            f"{format_flops(estimate.train_step_flops)} per step). ")
    if estimate.device_type == "cpu" and image_data and CPU_PRESET in presets:
        text += (f"On a CPU choose the {CPU_PRESET} preset (16×16 digits in a few minutes), "
                 "or train on a GPU.")
    elif estimate.device_type == "cpu":
        text += "Choose a smaller model size, a smaller batch size or fewer steps, or use a GPU."
    else:
        text += "Choose a smaller model size, a smaller batch size or fewer steps."
    return text + " Start still works; the first steps measure the real speed."


def sampling_warning(estimate: CostEstimate | None, count: int, steps: int,
                     model_calls_per_step: int = 1) -> str:
    """"" when sampling count × steps is quick; otherwise the cost and the fix."""
    if estimate is None:
        return ""
    seconds = estimate.sample_seconds(count, steps, model_calls_per_step)
    if seconds < SLOW_SAMPLE_SECONDS:
        return ""
    return (f"{count:,} samples × {steps:,} steps: about {format_long(seconds)} on "
            f"{device_words(estimate.device_type)} (an estimate). Fewer samples (e.g. "
            f"{IMAGE_SAMPLES}) or fewer steps (DDIM with 50) are much faster.")


def run_estimate(seconds_per_step: float, steps: int) -> str:
    """"~8.5 s per step, about 5:40:00 for 2,400 steps", measured by the first steps."""
    return (f"~{format_step_time(seconds_per_step)} per step, about "
            f"{format_duration(seconds_per_step * steps)} for {steps:,} steps")


def slow_run_warning(seconds_per_step: float, steps: int, device_type: str,
                     image_data: bool, presets: list[str] | tuple[str, ...] = ()) -> str:
    """"" unless the measured speed makes the run longer than SLOW_RUN_SECONDS."""
    total = seconds_per_step * steps
    if not math.isfinite(total) or total < SLOW_RUN_SECONDS:
        return ""
    text = (f"This run needs about {format_long(total)}: ~{format_step_time(seconds_per_step)} "
            f"per step for {steps:,} steps on {device_words(device_type)}. ")
    if device_type == "cpu" and image_data and CPU_PRESET in presets:
        text += f"Stop, choose the {CPU_PRESET} preset and Start again (a few minutes)."
    else:
        text += "Stop keeps the weights; a smaller model or batch, or a GPU, is faster."
    return text


def _image_data(owner) -> bool:
    dataset = getattr(owner, "dataset", None)
    return dataset is not None and dataset.kind == "image"


def settings_warning(session, presets=()) -> str:
    """training_warning for the settings the form shows (session.cost: core.cost's estimate
    of the last described model)."""
    return training_warning(session.cost, session.config.train.steps, _image_data(session),
                            presets)


def measured_warning(trainer, seconds_per_step: float, steps: int, presets=()) -> str:
    """slow_run_warning for a run of `trainer` whose first steps took seconds_per_step."""
    device = getattr(getattr(trainer, "device", None), "type", "cpu")
    return slow_run_warning(seconds_per_step, steps, device, _image_data(trainer), presets)


def request_warning(session, params: dict) -> str:
    """sampling_warning for a Trajectories request (its params dict) on the session's
    trained model (session.sampling_cost); "" when it cannot be judged."""
    from app.sampling import request_for
    from core.samplers import get_sampler

    trainer, cost = session.trainer, session.sampling_cost
    if trainer is None or cost is None:
        return ""
    T = trainer.diffusion.num_timesteps
    try:
        config = request_for(params, T, trainer.num_classes)
    except ValueError:          # ConfigError included: the request reports it itself
        return ""
    calls = get_sampler(config.sampler).model_calls_per_step * (2 if config.guidance else 1)
    return sampling_warning(cost, config.n, config.steps_for(T), calls)
