"""The sampler registry: the one list of samplers that config validation, the CLI's
`--sampler` choices and option flags, the app's sampler box and option widgets, and the
CUDA-graph path all read (at call time, so a sampler registered later is seen everywhere).

Adding a sampler: one module with its `SamplerSpec` (see core/samplers/base.py and the
DDPM and DDIM modules beside this file) and one `register(...)` line below.
"""

from __future__ import annotations

from core.samplers import (
    ddim,
    ddpm,
    dpm_singlestep,
    dpmpp_2m,
    euler,
    heun,
    langevin,
    pc,
    reverse_sde,
    rk45,
    unipc,
)
from core.samplers.base import OptionSpec, SamplerRun, SamplerSpec, StepOutput

__all__ = ["DEFAULT_SAMPLER", "OptionSpec", "SamplerRun", "SamplerSpec", "StepOutput",
           "all_options", "get_sampler", "register", "sampler_names", "samplers",
           "unregister"]

_REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler (ValueError if the name is taken or an option name clashes with a
    different option of the same name)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a sampler named {spec.name!r} is already registered")
    known = all_options()
    for option in spec.options:
        if option.name in known and known[option.name] != option:
            raise ValueError(f"sampler {spec.name!r}: option {option.name!r} differs from the "
                             "registered option of that name")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a sampler (tests that register a throwaway one)."""
    _REGISTRY.pop(name, None)


def samplers() -> tuple[SamplerSpec, ...]:
    """Every registered sampler, in registration order."""
    return tuple(_REGISTRY.values())


def sampler_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_sampler(name_or_spec: str | SamplerSpec) -> SamplerSpec:
    """The registered sampler; ValueError naming the choices for an unknown name."""
    if isinstance(name_or_spec, SamplerSpec):
        return name_or_spec
    spec = _REGISTRY.get(name_or_spec)
    if spec is None:
        raise ValueError(f"sampler = {name_or_spec!r} is invalid: must be one of "
                         + ", ".join(repr(n) for n in _REGISTRY))
    return spec


def all_options() -> dict[str, OptionSpec]:
    """Every option any registered sampler takes, by name, in first-use order."""
    options: dict[str, OptionSpec] = {}
    for spec in _REGISTRY.values():
        for option in spec.options:
            options.setdefault(option.name, option)
    return options


register(ddpm.SPEC)
register(ddim.SPEC)
register(dpmpp_2m.SPEC)
register(unipc.SPEC)
register(unipc.SPEC_3)
register(dpm_singlestep.SPEC_2)
register(dpm_singlestep.SPEC_3)
register(euler.SPEC)
register(euler.SPEC_ANCESTRAL)
register(heun.SPEC)
register(rk45.SPEC)
register(reverse_sde.SPEC)
register(pc.SPEC)
register(langevin.SPEC)
DEFAULT_SAMPLER = ddpm.SPEC.name
