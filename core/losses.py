"""The training objectives, one function per LossType (core.options), looked up in LOSSES by
GaussianDiffusion.training_losses. Each takes the pieces one model evaluation gives,
LossInputs, and returns per-example tensors (B,): dict(loss, mse, vlb).

    simple: loss = mse = mean_dims (target - mean channels)^2   (target eps, x0 or v; Ho et al.)
    hybrid: loss = mse + lambda_vlb T L_t   with L_t from a stop-gradient mean and the live
            variance channels, so L_t trains only Sigma_theta (Nichol & Dhariwal 2021)
    vlb:    loss = L_t                      (T E_t[L_t] + prior is the whole bound)

L_t (`vlb`) is the VLB term at t in bits/dim (GaussianDiffusion.vlb_terms); where a loss does
not train through it, it is computed without gradient, for the curves. Adding a loss (or a
per-t weighting of the MSE, e.g. by a function of the SNR the diffusion's tables hold): one
function here and its LOSSES line, plus its LossType member and label in core/options.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.options import LossType


@dataclass
class LossInputs:
    """diffusion: the GaussianDiffusion; model and model_kwargs as given to it; x0, x_t,
    noise (B, ...); t (B,); model_output (B, C or 2C, ...); mean_output its mean channels;
    raw_variance its variance channels or None; mse (B,) the mean-channel MSE."""

    diffusion: object
    model: object
    x0: torch.Tensor
    x_t: torch.Tensor
    t: torch.Tensor
    model_output: torch.Tensor
    mean_output: torch.Tensor
    raw_variance: torch.Tensor | None
    mse: torch.Tensor


def _vlb(inputs: LossInputs, model_output: torch.Tensor) -> torch.Tensor:
    return inputs.diffusion.vlb_terms(inputs.model, inputs.x0, inputs.x_t, inputs.t,
                                      model_output=model_output)["output"]


def simple_loss(inputs: LossInputs) -> dict:
    with torch.no_grad():
        vlb = _vlb(inputs, inputs.model_output.detach())
    return {"loss": inputs.mse, "mse": inputs.mse, "vlb": vlb}


def hybrid_loss(inputs: LossInputs) -> dict:
    frozen_mean = inputs.mean_output.detach()
    frozen = frozen_mean if inputs.raw_variance is None else torch.cat(
        [frozen_mean, inputs.raw_variance], dim=1)
    vlb = _vlb(inputs, frozen)
    d = inputs.diffusion
    return {"loss": inputs.mse + d.lambda_vlb * d.num_timesteps * vlb, "mse": inputs.mse,
            "vlb": vlb}


def vlb_loss(inputs: LossInputs) -> dict:
    vlb = _vlb(inputs, inputs.model_output)
    return {"loss": vlb, "mse": inputs.mse.detach(), "vlb": vlb}


LOSSES: dict[LossType, Callable[[LossInputs], dict]] = {
    LossType.SIMPLE: simple_loss,
    LossType.HYBRID: hybrid_loss,
    LossType.VLB: vlb_loss,
}
