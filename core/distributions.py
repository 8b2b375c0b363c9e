"""Closed-form Gaussian quantities used by the variational bound (all in nats, elementwise).

Arguments broadcast against each other like torch tensors; Python floats are accepted where
a tensor is. Shapes of the results are the broadcast shape.
"""

from __future__ import annotations

import math

import torch

NUM_BINS = 256  # 8-bit images scaled to [-1, 1]: bin width 2/255


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats.

    = 0.5 * (-1 + logvar2 - logvar1 + e^(logvar1 - logvar2) + (mean1 - mean2)^2 e^(-logvar2)).
    """
    tensor = next((a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, torch.Tensor)),
                  None)
    if tensor is None:
        raise TypeError("normal_kl: at least one argument must be a torch.Tensor")
    logvar1, logvar2 = (
        lv if isinstance(lv, torch.Tensor) else torch.tensor(lv, dtype=tensor.dtype,
                                                              device=tensor.device)
        for lv in (logvar1, logvar2)
    )
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) by the tanh approximation 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    The same approximation as the improved-DDPM reference code, so bits/dim match it.
    """
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor,
                                        log_scales: torch.Tensor) -> torch.Tensor:
    """log P(x) per element for a Gaussian N(means, e^(2 log_scales)) discretized to 256 bins.

    `x` holds 8-bit values scaled to [-1, 1] (bin centres k*2/255 - 1). The bin of x is
    [x - 1/255, x + 1/255], except that the lowest bin extends to -inf and the highest to
    +inf, so the probabilities of the 256 bins sum to 1. Returns log-probabilities (nats),
    same shape as x.
    """
    if x.shape != means.shape or x.shape != log_scales.shape:
        raise ValueError(
            f"discretized_gaussian_log_likelihood: x {tuple(x.shape)}, means "
            f"{tuple(means.shape)} and log_scales {tuple(log_scales.shape)} must have one shape"
        )
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    half_bin = 1.0 / (NUM_BINS - 1)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + half_bin))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - half_bin))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    lowest_bin = x < -1.0 + half_bin
    highest_bin = x > 1.0 - half_bin
    return torch.where(
        lowest_bin,
        log_cdf_plus,
        torch.where(highest_bin, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )


def gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor,
                            log_scales: torch.Tensor) -> torch.Tensor:
    """log N(x; means, e^(2 log_scales)) per element: a density (nats), may be positive.

    = -0.5 log(2 pi) - log_scales - 0.5 (x - means)^2 e^(-2 log_scales).
    """
    return (-0.5 * math.log(2.0 * math.pi) - log_scales
            - 0.5 * (x - means) ** 2 * torch.exp(-2.0 * log_scales))
