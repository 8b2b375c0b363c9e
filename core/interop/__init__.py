"""Models from elsewhere as first-class models here, and models from here for elsewhere.

- `open_model(path, flags=None)`: the explorer's checkpoints, diffusers DDPM/DDIM pipeline
  and UNet2DModel folders, improved-/guided-diffusion state dicts with their flags ->
  OpenedModel (model, diffusion, config, what was mapped); `detect_format(path)`.
- `guess_flags(state)`, `parse_flags(flags)`, `flags_text(values)`: improved-diffusion's
  flags for a dialog.
- `export_diffusers(opened, folder)`: a DDPMPipeline / DDIMPipeline folder.
- `describe(opened)`: what `python -m core inspect` prints.

Every refusal is an InteropError (a ValueError) naming the file, key or flag.
The network is always the explorer's UNet (core.models.unet), with the weights converted:
see docs/ARCHITECTURE.md for why.
"""

from core.interop.errors import DOWNLOAD_HINT, InteropError
from core.interop.open import detect_format, open_model
from core.interop.opened import FORMATS, OpenedModel

__all__ = ["DOWNLOAD_HINT", "FORMATS", "InteropError", "OpenedModel", "detect_format",
           "open_model"]
