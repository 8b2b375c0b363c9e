"""What `python -m core inspect` prints about an opened model: its format, network,
parameter count, diffusion settings, what was mapped and what was noted, and whether the
explorer can fine-tune it."""

from __future__ import annotations

from core.config import ConfigError, ModelConfig
from core.interop.opened import OpenedModel
from core.models import UNET_OPTIONS, count_parameters


def describe(opened: OpenedModel) -> dict:
    """A JSON-ready summary of `opened` (the keys `inspect --json` prints)."""
    model, diffusion = opened.config.model, opened.config.diffusion
    learned = diffusion.learns_sigma
    channels = opened.data_shape[0]
    defaults = ModelConfig()
    network = {"type": type(opened.model).__name__,
               "parameters": count_parameters(opened.model),
               "input_shape": list(opened.data_shape),
               "output": f"{diffusion.mean_type}" + (" + variance v" if learned else ""),
               "output_channels": 2 * channels if learned else channels}
    if network["type"] == "UNet":
        network.update(channels=model.channels, channel_mult=list(model.channel_mult),
                       num_res_blocks=model.num_res_blocks,
                       attention_resolutions=list(model.attention_resolutions),
                       heads=(f"of width {model.num_head_channels}" if model.num_head_channels
                              else str(model.num_heads)),
                       options={name: getattr(model, name) for name in UNET_OPTIONS
                                if name != "num_head_channels"
                                and getattr(model, name) != getattr(defaults, name)})
    try:
        opened.fine_tune_config("data")
        fine_tune = "yes (choose a data set of the model's shape)"
    except ConfigError as exc:
        fine_tune = f"no: {exc}"
    return {
        "format": opened.format, "path": opened.path, "network": network,
        "num_classes": opened.num_classes,
        "diffusion": {"timesteps": diffusion.timesteps, "schedule": diffusion.schedule,
                      "mean_type": diffusion.mean_type, "variance_type": diffusion.variance_type,
                      "loss_type": diffusion.loss_type, "lambda_vlb": diffusion.lambda_vlb},
        "flags": opened.flags, "flags_guessed": opened.flags_guessed,
        "mapped": list(opened.mapped), "notes": list(opened.notes), "fine_tune": fine_tune,
    }


def describe_lines(summary: dict) -> list[str]:
    """describe()'s summary as the lines `inspect` prints."""
    net, d = summary["network"], summary["diffusion"]
    lines = [f"format: {summary['format']}", f"path: {summary['path']}",
             f"network: {net['type']}, {net['parameters']:,} parameters; input "
             f"{tuple(net['input_shape'])}, output {net['output_channels']} channels "
             f"({net['output']})"]
    if "channels" in net:
        options = ", ".join(f"{k} {v}" for k, v in net["options"].items()) or "none"
        lines.append(f"architecture: channels {net['channels']}, channel_mult "
                     f"{net['channel_mult']}, num_res_blocks {net['num_res_blocks']}, attention "
                     f"at {net['attention_resolutions']} and the middle, heads {net['heads']}; "
                     f"options beyond the explorer's defaults: {options}")
    classes = summary["num_classes"]
    lines.append("classes: " + ("none (unconditional)" if classes is None
                                else f"{classes} (+ the null class for unconditional calls)"))
    lines.append(f"diffusion: T = {d['timesteps']}, schedule {d['schedule']}, mean_type "
                 f"{d['mean_type']}, variance_type {d['variance_type']}, loss {d['loss_type']}"
                 + (f" (lambda_vlb {d['lambda_vlb']:g})" if d["loss_type"] == "hybrid" else ""))
    if summary["flags"] is not None:
        from core.interop.improved_flags import flags_text

        lines.append(("flags (guessed from the tensors): " if summary["flags_guessed"]
                      else "flags: ") + flags_text(summary["flags"]))
    lines += [f"mapped: {line}" for line in summary["mapped"]]
    lines += [f"note: {line}" for line in summary["notes"]]
    lines.append(f"fine-tune here: {summary['fine_tune']}")
    return lines
