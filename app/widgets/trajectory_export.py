"""The Trajectories panel's exports: an animated GIF of the whole trajectory and a PNG strip
of evenly spaced frames, both grabbed from the panel's view as the user sees it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from app.widgets.images import qimage_to_array

GIF_MAX_FRAMES = 80
STRIP_FRAMES = 8
GIF_MAX_SIDE = 720
STRIP_SIDE = 320


def grab_frames(panel, indices, widget, max_side: int) -> list[tuple[int, Image.Image]]:
    """(t, picture of `widget`) at each frame index of `panel` (a TrajectoryPanel), scaled
    to at most max_side pixels; the panel shows its current frame again afterwards."""
    current = panel.trajectorySlider.value()
    frames = []
    try:
        for index in indices:
            panel.show_frame(int(index))
            image = Image.fromarray(qimage_to_array(widget.grab().toImage()))
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            t = int(np.asarray(panel.trajectory.timesteps)[int(index)])
            frames.append((t, image))
    finally:
        panel.show_frame(current)
    return frames


def _evenly_spaced(panel, most: int) -> np.ndarray:
    if panel.frame_count() == 0:
        raise ValueError("there is no trajectory to export; press Sample first")
    count = panel.frame_count()
    return np.unique(np.linspace(0, count - 1, min(most, count)).round().astype(int))


def export_gif(panel, path: str) -> int:
    """Animated GIF of the trajectory (at most GIF_MAX_FRAMES frames); returns the count."""
    indices = _evenly_spaced(panel, GIF_MAX_FRAMES)
    frames = [image.convert("P", palette=Image.Palette.ADAPTIVE)
              for _, image in grab_frames(panel, indices, panel.trajectoryView, GIF_MAX_SIDE)]
    durations = [60] * (len(frames) - 1) + [1500]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                   duration=durations, loop=0)
    return len(frames)


def export_png_strip(panel, path: str) -> int:
    """Evenly spaced frames of x_t side by side, each labelled with its t; the count."""
    indices = _evenly_spaced(panel, STRIP_FRAMES)
    frames = grab_frames(panel, indices, panel.trajectoryView.widgets[0], STRIP_SIDE)
    width = sum(image.width for _, image in frames)
    height = max(image.height for _, image in frames) + 22
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    left = 0
    for t, image in frames:
        strip.paste(image, (left, 22))
        draw.text((left + 6, 4), f"t = {t}", fill=(0, 0, 0))
        left += image.width
    strip.save(path, format="PNG")
    return len(frames)
