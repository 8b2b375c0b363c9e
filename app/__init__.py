"""Diffusion Explorer's Qt desktop app: a session object (the observable state), workers that
run `core` code in QThreads, and one module per panel. The app holds no diffusion math: every
number it shows comes from `core` (schedule arrays, entropy bounds, probe dicts, trajectories).
"""

ORGANIZATION = "DiffusionExplorer"
APPLICATION = "Diffusion Explorer"
