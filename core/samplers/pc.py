"""Predictor-corrector sampling (Song et al. 2021, algorithms 2 and 3): at each level, C
Langevin corrector steps, then one reverse-diffusion predictor step to the next level.

Predictor: the forward step of the process between the levels, x_n(t) = a x_n(t') +
sqrt(q) z (core.sde.native_transition; VP: a = sqrt(abar_t / abar_t'), q = 1 - a^2; VE:
a = 1, q = sigma_t^2 - sigma_t'^2), reversed: x_n' = (2 - a) x_n + q s_n + sqrt(q) z
(score_sde's ReverseDiffusionPredictor).
Corrector: x <- x + e s + sqrt(2 e) z with e = 2 alpha_i (r |z| / |s|)^2, r the
signal-to-noise ratio `snr`, |.| each sample's norm averaged over the batch (as score_sde
computes it, so one batch shares a step size), alpha_i = 1 - beta_i of the unrespaced
step at the level for VP and 1 for VE; Langevin with this rule is unchanged by rescaling x,
so it runs in x directly (a zero score makes no move). The last predictor returns the model's x0 (Tweedie denoising).
1 + C network calls per level.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import OptionSpec, SamplerRun, SamplerSpec, StepOutput
from core.sde import native_coefficients, process_of, run_times

SNR = OptionSpec("snr", "r", 0.16, "the corrector's signal-to-noise ratio r (Song et al. "
                 "2021 use 0.16 on CIFAR-10)", low=0.0, high=2.0, step=0.01)
CORRECTOR_STEPS = OptionSpec("corrector_steps", "C", 1.0, "Langevin corrector steps per "
                             "level", low=0.0, high=100.0, step=1.0)
PREDICT, CORRECT, FINAL = 0, 1, 2


class PredictorCorrectorRun(SamplerRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        schedule = diffusion.schedule
        process = process_of(schedule)
        per_level = 1 + int(round(self.options["corrector_steps"]))
        t = run_times(schedule)
        t_prev = np.append(0.0, t[:-1])
        a, q = process.native_transition(t_prev, t)
        x_coef, eps_coef, noise_coef = native_coefficients(process, t, 2.0 - a, q, q, t_prev)
        self.num_steps = len(t) * per_level
        sub = np.arange(self.num_steps)
        level, self.kind = sub // per_level, np.where(sub % per_level == 0, PREDICT, CORRECT)
        self.kind[0] = FINAL
        abar = schedule.alphas_cumprod[level]
        if process.name == "vp":
            original = np.clip(np.round(schedule.timestep_map[level]).astype(np.int64), 0, None)
            alpha = schedule.base.alphas[original]
        else:
            alpha = np.ones(self.num_steps)
        self.here = self.point_tables(schedule.sigmas[level])
        self.x_coef, self.eps_coef = self.table(x_coef[level]), self.table(eps_coef[level])
        self.noise_coef = self.table(noise_coef[level])
        self.inv_root = self.table(1.0 / np.sqrt(1.0 - abar))
        self.corrector_scale = self.table(2.0 * alpha * self.options["snr"] ** 2)
        self.noise_steps = self.kind != FINAL
        self.variance_host = np.where(self.kind == PREDICT, noise_coef[level] ** 2, np.nan)

    def variant(self, step: int):
        return int(self.kind[step])

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        x0, eps = self.predict(x, t, self.here)
        view = (-1,) + (1,) * (x.ndim - 1)
        if variant == FINAL:
            return StepOutput(x0, x0, eps, torch.zeros((), device=x.device, dtype=x.dtype))
        if variant == PREDICT:
            x_next = self.x_coef[t].reshape(view) * x + self.eps_coef[t].reshape(view) * eps
            x_next = x_next + self.noise_coef[t].reshape(view) * noise
            return StepOutput(x_next, x0, eps, self.noise_coef[t[:1]][0] ** 2)
        score = -eps * self.inv_root[t].reshape(view)
        grad_norm = score.flatten(1).norm(dim=1).mean()
        noise_norm = noise.flatten(1).norm(dim=1).mean()
        size = self.corrector_scale[t[:1]][0] * (noise_norm / grad_norm.clamp_min(1e-30)) ** 2
        size = torch.where(grad_norm > 0, size, torch.zeros_like(size))  # no score, no move
        x_next = x + size * score + torch.sqrt(2.0 * size) * noise
        return StepOutput(x_next, x0, eps, 2.0 * size)

    def record_variance(self, step: int, output: StepOutput):
        if self.kind[step] == PREDICT:
            return float(self.variance_host[step])
        return output.variance if self.kind[step] == CORRECT else 0.0


SPEC = SamplerSpec(
    name="pc", label="Predictor–corrector",
    description="Reverse-diffusion predictor + Langevin corrector with signal-to-noise ratio "
                "r (Song et al. 2021); 1 + C network calls per step",
    deterministic=False, make_run=PredictorCorrectorRun, options=(SNR, CORRECTOR_STEPS),
    calls_per_step=lambda options: 1 + int(round(options["corrector_steps"])))
