"""The probability-flow ODE solved by an adaptive Runge-Kutta 4(5) method (Dormand-Prince):
with x~ = x / alpha = x0 + s eps (VE view), dx~/ds = eps(x~ alpha(s), s), integrated in
u = log s (dx~/du = s eps: the same ODE, evenly scaled over the four decades of s) from
s_max = sigma at T-1 down to s_min = sigma at 0, then x0 = the model's estimate there (the
last step of every solver here). The step sizes follow the tolerances `rtol` and `atol`; the network
calls are counted as the solver makes them (`nfe` after a run), not assumed. Uses
torchdiffeq's dopri5 where it is installed (on the tensors' device), else scipy's
solve_ivp(method="RK45") in float64 on the host. Adaptive steps mean host decisions: the
run is never captured as a CUDA graph.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from core.samplers.base import OptionSpec, SamplerRun, SamplerSpec, StepOutput

RTOL = OptionSpec("rtol", "rtol", 1e-5, "relative tolerance of the adaptive ODE solver",
                  low=1e-10, high=1e-1, step=10.0, scale="log")
ATOL = OptionSpec("atol", "atol", 1e-5, "absolute tolerance of the adaptive ODE solver",
                  low=1e-10, high=1e-1, step=10.0, scale="log")


class RK45Run(SamplerRun):
    capturable = False

    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        sigmas = diffusion.schedule.sigmas
        self.s_max, self.s_min = float(sigmas[-1]), float(sigmas[0])
        self.num_steps = 1                              # one "step": the whole integration
        self.noise_steps = np.zeros(1, dtype=bool)
        self.nfe = 0
        self.method = "torchdiffeq" if importlib.util.find_spec("torchdiffeq") else "scipy"
        params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
        self.model_dtype = params[0].dtype if params else None

    def _predict(self, x: torch.Tensor, s: float):
        """(x0, eps) at VE sigma s, one counted network call."""
        self.nfe += 1
        base = self.diffusion.schedule.base
        alpha = 1.0 / (1.0 + s * s) ** 0.5
        t_model = torch.full((x.shape[0],), float(base.timestep_at(s)), device=x.device)
        dtype = self.model_dtype or x.dtype
        x0, eps = self.diffusion.predict_at(
            self.model, x.to(dtype), t_model, torch.tensor(alpha, dtype=dtype, device=x.device),
            torch.tensor(s * alpha, dtype=dtype, device=x.device), self.model_kwargs, self.clip)
        return x0.to(x.dtype), eps.to(x.dtype)

    def _derivative(self, x_tilde: torch.Tensor, u: float) -> torch.Tensor:
        """dx~/du at u = log s."""
        s = float(np.exp(u))
        alpha = 1.0 / (1.0 + s * s) ** 0.5
        return s * self._predict(x_tilde * alpha, s)[1]

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        self.nfe = 0
        rtol, atol = self.options["rtol"], self.options["atol"]
        x_tilde = x * (1.0 + self.s_max ** 2) ** 0.5
        if self.method == "torchdiffeq":
            from torchdiffeq import odeint

            span = torch.tensor([np.log(self.s_max), np.log(self.s_min)], dtype=torch.float64)
            end = odeint(lambda u, y: self._derivative(y, float(u)), x_tilde.double(), span,
                         rtol=rtol, atol=atol, method="dopri5")[-1].to(x.dtype)
        else:
            from scipy.integrate import solve_ivp

            shape = x.shape

            def f(u, y):
                y_t = torch.from_numpy(y).reshape(shape).to(x.device)
                return self._derivative(y_t, float(u)).double().cpu().numpy().ravel()

            result = solve_ivp(f, (np.log(self.s_max), np.log(self.s_min)),
                               x_tilde.double().cpu().numpy().ravel(), method="RK45",
                               rtol=rtol, atol=atol)
            if not result.success:
                raise RuntimeError(f"the RK45 solver failed: {result.message}")
            end = torch.from_numpy(result.y[:, -1]).reshape(shape).to(x.device, x.dtype)
        alpha_min = 1.0 / (1.0 + self.s_min ** 2) ** 0.5
        x0, eps = self._predict(end * alpha_min, self.s_min)
        return StepOutput(x0, x0, eps, torch.zeros((), device=x.device))


SPEC = SamplerSpec(
    name="rk45", label="RK45 (adaptive ODE)",
    description="The probability-flow ODE by an adaptive Runge-Kutta 4(5) solver (torchdiffeq "
                "dopri5, or scipy's RK45); network calls counted as it runs",
    deterministic=True, make_run=RK45Run, options=(RTOL, ATOL), adaptive=True,
    default_steps=lambda T: 1)
