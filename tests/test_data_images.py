"""core.data image folders: every Pillow mode and format we promise, bad files skipped and
counted, nested and looping folders, sub-folder labels, and the memory guards."""

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin, features

from core.data import DataError, get_dataset, to_uint8_images
from core.data.images import decode_image, find_image_files

GREY = 200  # a solid grey every test picture below is made of, unless it says otherwise


def signed(value: float) -> float:
    return value / 127.5 - 1.0


def save(image: Image.Image, path, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


@pytest.fixture
def mixed_folder(tmp_path):
    """Ten usable solid-grey pictures in many modes and formats, three bad files, one text
    file that is ignored (not an image extension)."""
    root = tmp_path / "pictures"
    save(Image.new("L", (40, 30), GREY), root / "grey.png")
    save(Image.new("RGB", (30, 30), (GREY,) * 3), root / "rgb.png")
    save(Image.new("RGBA", (30, 30), (GREY, GREY, GREY, 255)), root / "rgba_opaque.png")
    save(Image.new("LA", (30, 30), (GREY, 255)), root / "nested" / "la.png")
    palette = Image.new("P", (30, 30), 1)
    palette.putpalette([0, 0, 0, GREY, GREY, GREY] + [0] * 762)
    save(palette, root / "nested" / "deeper" / "palette.png")
    save(Image.fromarray(np.full((30, 30), GREY * 257, dtype=np.uint16)), root / "sixteen_bit.png")
    save(Image.new("RGB", (64, 48), (GREY,) * 3), root / "photo.jpg", quality=95)
    save(Image.new("L", (32, 32), GREY), root / "grey.JPEG", quality=95)
    save(Image.new("RGB", (30, 30), (GREY,) * 3), root / "bitmap.bmp")
    if features.check("webp"):
        save(Image.new("RGB", (30, 30), (GREY,) * 3), root / "lossless.webp", lossless=True)
    else:  # keep the count at ten
        save(Image.new("RGB", (30, 30), (GREY,) * 3), root / "stand_in.bmp")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is not a picture\n")
    good = (root / "rgb.png").read_bytes()
    (root / "nested" / "corrupt.png").write_bytes(good[:40] + b"\x00garbage" * 20)
    (root / "README.txt").write_text("ignored: not an image extension")
    return root


def test_mixed_folder_loads_every_mode_and_counts_bad_files(mixed_folder):
    data = get_dataset(mixed_folder, image_size=16, grayscale=True)
    assert data.kind == "image" and data.shape == (1, 16, 16)
    assert len(data.train) + len(data.test) == 10
    assert len(data.test) == 1
    assert data.skipped == 3
    assert data.train_labels is None and data.num_classes is None  # loose files: no classes
    assert data.name == "pictures"
    every = torch.cat([data.train, data.test])
    # every picture is solid grey 200: the JPEGs may be off by a level or two
    assert (every - signed(GREY)).abs().max() < 3 / 127.5
    assert "3 unreadable files skipped" in data.describe()


def test_mixed_folder_in_rgb(mixed_folder):
    data = get_dataset(mixed_folder, image_size=12, grayscale=False)
    assert data.train.shape[1:] == (3, 12, 12)
    every = torch.cat([data.train, data.test])
    assert (every - signed(GREY)).abs().max() < 3 / 127.5


def test_colour_conversions_and_alpha_over_white(tmp_path):
    red = save(Image.new("RGB", (20, 20), (255, 0, 0)), tmp_path / "red.png")
    grey = decode_image(red, 8, grayscale=True)
    assert grey.shape == (8, 8, 1) and np.all(grey == 76)  # 0.299 * 255 = 76.2 (ITU-R 601)
    colour = decode_image(red, 8, grayscale=False)
    assert colour.shape == (8, 8, 3) and np.all(colour == [255, 0, 0])
    clear = save(Image.new("RGBA", (20, 20), (0, 0, 0, 0)), tmp_path / "clear.png")
    assert np.all(decode_image(clear, 8, grayscale=False) == 255)  # transparent -> white
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 255] + [0] * 765)
    transparent_palette = save(palette, tmp_path / "palette.png", transparency=0)
    assert np.all(decode_image(transparent_palette, 8, grayscale=True) == 255)
    opaque_palette = save(palette, tmp_path / "palette_opaque.png")
    assert np.all(decode_image(opaque_palette, 8, grayscale=False) == [0, 0, 255])
    bits = save(Image.new("1", (20, 20), 1), tmp_path / "one_bit.bmp")
    assert np.all(decode_image(bits, 8, grayscale=True) == 255)
    cmyk = save(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=100)
    rgb = decode_image(cmyk, 8, grayscale=False).astype(int)
    assert np.all(np.abs(rgb - [255, 0, 0]) <= 3)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.array([0, 257 * 50, 257 * 255], dtype=np.uint16), (3, 1)).repeat(4, axis=1)  # 3x12
    path = save(Image.fromarray(np.repeat(ramp, 4, axis=0)), tmp_path / "ramp16.png")  # 12x12
    decoded = decode_image(path, 12, grayscale=True)[..., 0]
    assert decoded[0, :4].tolist() == [0] * 4
    assert decoded[0, 4:8].tolist() == [50] * 4
    assert decoded[0, 8:].tolist() == [255] * 4


def test_centre_crop_keeps_the_middle_square(tmp_path):
    wide = np.zeros((20, 60), dtype=np.uint8)
    wide[:, 20:40] = 255  # the centre 20x20 square is white, the sides black
    path = save(Image.fromarray(wide), tmp_path / "wide.png")
    assert np.all(decode_image(path, 10, grayscale=True) == 255)
    tall = save(Image.fromarray(np.ascontiguousarray(wide.T)), tmp_path / "tall.png")
    assert np.all(decode_image(tall, 10, grayscale=True) == 255)


def test_large_jpeg_is_drafted(tmp_path, monkeypatch):
    yy, xx = np.mgrid[0:1600, 0:1600]
    picture = ((xx < 800) * 255).astype(np.uint8)  # left half white
    path = save(Image.fromarray(picture).convert("RGB"), tmp_path / "big.jpg", quality=90)
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size, *rest):
        result = original(self, mode, size, *rest)
        calls.append((mode, size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decoded = decode_image(path, 16, grayscale=True)[..., 0].astype(int)
    assert calls and calls[0][0] == "L" and calls[0][2] == (200, 200)  # decoded at 1/8 scale
    assert np.all(decoded[:, :6] > 245) and np.all(decoded[:, -6:] < 10)


def test_decompression_bomb_is_skipped_not_fatal(tmp_path, monkeypatch):
    save(Image.new("L", (20, 20), GREY), tmp_path / "a_small.png")
    save(Image.new("L", (20, 20), GREY), tmp_path / "b_small.png")
    save(Image.new("L", (40, 40), GREY), tmp_path / "over_limit.png")  # 1600 px: warning zone
    save(Image.new("L", (64, 64), GREY), tmp_path / "bomb.png")  # 4096 px > 2 x limit: error
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        data = get_dataset(tmp_path, image_size=8)
    assert len(data.train) + len(data.test) == 2
    assert data.skipped == 2


def test_subfolders_become_labels(tmp_path):
    for index, (name, value) in enumerate([("cats", 30), ("dogs", 220)]):
        for k in range(5 + index):
            save(Image.new("L", (12, 12), value), tmp_path / name / f"{k}.png")
    data = get_dataset(tmp_path, image_size=8, seed=5)
    assert data.num_classes == 2 and data.class_names == ("cats", "dogs")
    images = torch.cat([data.train, data.test])
    labels = torch.cat([data.train_labels, data.test_labels])
    assert labels.dtype == torch.int64 and torch.bincount(labels).tolist() == [5, 6]
    brightness = images.mean(dim=(1, 2, 3))
    assert torch.allclose(brightness[labels == 0], torch.tensor(signed(30)), atol=1e-6)
    assert torch.allclose(brightness[labels == 1], torch.tensor(signed(220)), atol=1e-6)
    again = get_dataset(tmp_path, image_size=8, seed=5)
    assert torch.equal(again.test, data.test) and torch.equal(again.test_labels, data.test_labels)


def test_values_survive_the_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    for k, picture in enumerate(pictures):
        save(Image.fromarray(picture), tmp_path / f"{k}.png")
    data = get_dataset(tmp_path, image_size=8, grayscale=False, seed=0)
    assert data.train.min() >= -1 and data.train.max() <= 1
    restored = to_uint8_images(torch.cat([data.train, data.test]))
    assert sorted(p.tobytes() for p in restored) == sorted(p.tobytes() for p in pictures)


def test_empty_and_useless_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty.*tried 0 files"):
        get_dataset(empty)
    useless = tmp_path / "useless"
    useless.mkdir()
    (useless / "zero.png").write_bytes(b"")
    (useless / "text.jpg").write_text("not a jpeg")
    with pytest.raises(DataError, match="useless.*tried 2 files"):
        get_dataset(useless)
    lonely = tmp_path / "lonely"
    save(Image.new("L", (8, 8), 0), lonely / "one.png")
    with pytest.raises(DataError, match="at least 2"):
        get_dataset(lonely)


def test_single_picture_path_is_refused(tmp_path):
    path = save(Image.new("L", (8, 8), 0), tmp_path / "one.png")
    with pytest.raises(DataError, match="single picture"):
        get_dataset(path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_symlink_loop_terminates_and_counts_each_file_once(tmp_path):
    root = tmp_path / "loop"
    save(Image.new("L", (8, 8), 10), root / "a.png")
    save(Image.new("L", (8, 8), 20), root / "sub" / "b.png")
    os.symlink(root, root / "sub" / "back_to_root")  # a folder link back up: a loop
    os.symlink(root / "sub", root / "sub_again")  # the same folder twice
    os.symlink(root / "a.png", root / "sub" / "a_link.png")  # the same file twice
    files = find_image_files(root)
    assert sorted(p.name for p in files) == ["a.png", "b.png"]
    data = get_dataset(root, image_size=8)
    assert len(data.train) + len(data.test) == 2
