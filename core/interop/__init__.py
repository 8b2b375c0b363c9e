"""Models from elsewhere as first-class models here, and models from here for elsewhere.

- `open_model(path, flags=None)`: the explorer's checkpoints, diffusers DDPM/DDIM pipeline
  and UNet2DModel folders, improved-/guided-diffusion state dicts with their flags ->
  OpenedModel (model, diffusion, config, what was mapped); `detect_format(path)`.
- `guess_flags_of(path)` -> FlagGuess(flags, determined), `parse_flags(flags)`,
  `flags_text(values)`: improved-diffusion's flags for a dialog; `flags_beside(path)`.
- `export_diffusers(opened, folder)`: a DDPMPipeline / DDIMPipeline folder.
- `describe(opened)`: what `python -m core inspect` prints (a dict; `describe_lines`).
- `fine_tune_trainer(opened, dataset)`: a Trainer that starts from the opened weights.

Every refusal is an InteropError (a ValueError) naming the file, key or flag.
The network is always the explorer's UNet (core.models.unet), with the weights converted:
see docs/ARCHITECTURE.md for why.
"""

from core.interop.describe import describe, describe_lines
from core.interop.errors import DOWNLOAD_HINT, InteropError
from core.interop.export import ExportWriteError, export_diffusers
from core.interop.fine_tune import fine_tune_trainer
from core.interop.improved import FlagGuess, flags_beside, guess_flags, guess_flags_of
from core.interop.improved_flags import flags_text, parse_flags
from core.interop.open import detect_format, open_model
from core.interop.opened import FORMATS, OpenedModel

__all__ = ["DOWNLOAD_HINT", "FORMATS", "ExportWriteError", "FlagGuess", "InteropError",
           "OpenedModel", "describe", "describe_lines", "detect_format", "export_diffusers",
           "fine_tune_trainer", "flags_beside", "flags_text", "guess_flags", "guess_flags_of",
           "open_model", "parse_flags"]
