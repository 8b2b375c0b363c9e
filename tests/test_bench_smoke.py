"""The speed benchmarks (bench/train_throughput.py, sample_speed.py, headless_worker_speed.py)
run end to end on tiny CPU sizes, report sane numbers, and their matched configurations and
helpers are right. Peers are not run here (importing them alone takes seconds)."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"

# parameter counts of the peers (lucidrains Unet(dim=64, dim_mults=(1,2,4,8)) and
# diffusers UNet2DModel in the google/ddpm-cifar10-32 layout), counted from the packages
PEER_PARAMS = {"lucidrains": 35_711_491, "diffusers": 35_746_307}


def load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_train_throughput_tiny_runs_both_matches_and_writes_json(tmp_path):
    bench = load("train_throughput")
    out = tmp_path / "train.json"
    results = bench.main(["--tiny", "--steps", "2", "--rounds", "2", "--warmup", "1",
                          "--peers", "none", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written["config"]["size"] == "tiny" and written["config"]["batch"] == 4
    rows = results["rows"]
    assert [r["label"] for r in rows] == ["ours~lucidrains fp32 eager", "ours~diffusers fp32 eager"]
    for row in rows:
        assert row["steps_timed"] == 2
        assert row["images_per_s"] > 0 and row["step_ms_median"] > 0
        assert row["images_per_s"] == pytest.approx(4 / (row["step_ms_median"] / 1e3), rel=1e-3)
        assert row["train_gflop_per_image"] > 0 and row["loss_finite"]
        assert row["path"].startswith("eager (cpu)")
    assert written["ratios"] == {} and written["peers_missing"] == {}


def test_train_throughput_rejects_bad_options():
    bench = load("train_throughput")
    with pytest.raises(SystemExit):
        bench.parse_args(["--tiny", "--ours", "fp16:eager"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--tiny", "--peers", "improved-diffusion"])


def test_graph_mode_on_cpu_reports_the_fallback(tmp_path):
    bench = load("train_throughput")
    results = bench.main(["--tiny", "--steps", "1", "--rounds", "1", "--warmup", "1",
                          "--peers", "none", "--match", "diffusers", "--ours", "fp32:graph"])
    (row,) = results["rows"]
    assert "CUDA graphs need a CUDA device" in row["path"]


def test_loss_curve_mode_trains_both_paths_from_one_seed(tmp_path):
    bench = load("train_throughput")
    results = bench.main(["--loss-curve", "12", "--size", "tiny", "--device", "cpu",
                          "--batch", "2", "--ours", "fp32:eager", "--json",
                          str(tmp_path / "curve.json")])
    runs = results["runs"]
    assert len(runs["eager_fp32"]["loss"]) == len(runs["fast"]["loss"]) == 12
    # the same path twice: identical curves, so the data, seeds and steps line up
    assert runs["eager_fp32"]["loss"] == runs["fast"]["loss"]
    assert results["max_smoothed_difference"] == 0.0 and results["window_mean_noise"] > 0
    assert json.loads((tmp_path / "curve.json").read_text())["steps"] == 12


def test_sample_speed_tiny_runs_and_samples_are_finite(tmp_path):
    bench = load("sample_speed")
    out = tmp_path / "sample.json"
    results = bench.main(["--tiny", "--peers", "none", "--ddim-repeats", "1",
                          "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["label"] for r in rows] == ["ours~lucidrains", "ours~diffusers"]
    for row in rows:
        assert row["finite"] and row["ddpm_steps"] == 20 and row["ddim_steps"] == 5
        assert row["ddpm_s"] > 0 and row["ddim_s_median"] > 0
        assert row["ddpm_ms_per_step"] == pytest.approx(row["ddpm_s"] / 20 * 1e3, rel=1e-2)
    assert results["ratios"] == {}


def test_headless_worker_speed_tiny_compares_worker_and_bench(tmp_path):
    # In a child process: the bench creates a QCoreApplication, and a second Qt application
    # object in this process would abort every later window test.
    out = tmp_path / "worker.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "headless_worker_speed.py"), "--tiny", "--steps", "4",
         "--rounds", "2", "--warmup", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = json.loads(out.read_text())
    speeds = written["images_per_s"]
    assert set(speeds) == {"bench", "worker", "run"} and all(v > 0 for v in speeds.values())
    assert written["worker_over_bench"] == pytest.approx(speeds["worker"] / speeds["bench"],
                                                         rel=1e-2)
    assert written["losses_finite"]


@pytest.mark.parametrize("peer", ["lucidrains", "diffusers"])
def test_matched_configurations_are_within_ten_percent_of_the_peers(peer):
    common = load("_bench_common")
    from core.models import UNet

    spec = common.MATCHES[peer]["full"]
    model = UNet(3, spec["channels"], 3, spec["num_res_blocks"], spec["attention_resolutions"],
                 32, channel_mult=spec["channel_mult"])
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / PEER_PARAMS[peer] - 1) <= 0.10, params


def test_flop_count_of_a_convolution_is_the_closed_form():
    common = load("_bench_common")
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 8, 8)
    # 2 multiply-adds per weight per output position
    assert common.count_flops(lambda: conv(x)) == 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3


def test_ratios_use_each_peers_best_precision():
    bench = load("train_throughput")
    rows = [
        {"label": "ours~a", "kind": "ours", "family": "lucidrains", "images_per_s": 600.0},
        {"label": "a32", "kind": "peer", "family": "lucidrains", "images_per_s": 100.0},
        {"label": "a16", "kind": "peer", "family": "lucidrains", "images_per_s": 150.0},
        {"label": "b32", "kind": "peer", "family": "diffusers", "images_per_s": 200.0},
    ]
    entry = bench.ratios(rows)["ours~a"]
    assert entry["vs_lucidrains"] == 4.0 and entry["vs_diffusers"] == 3.0
    assert entry["faster_peer"] == "diffusers" and entry["vs_faster_peer"] == 3.0
    assert entry["vs_matched_peer"] == 4.0
    sample = load("sample_speed")
    timed = [{"label": "ours", "kind": "ours", "family": "x", "ddpm_s": 2.0, "ddim_s_median": 0.5},
             {"label": "p", "kind": "peer", "family": "lucidrains", "ddpm_s": 8.0,
              "ddim_s_median": 1.0},
             {"label": "q", "kind": "peer", "family": "diffusers", "ddpm_s": 4.0,
              "ddim_s_median": 2.0}]
    got = sample.ratios(timed)["ours"]
    assert got["ddpm_s_vs_faster_peer"] == 0.5 and got["ddim_s_median_vs_faster_peer"] == 0.5
    assert math.isclose(got["ddpm_s_vs_lucidrains"], 0.25)


def test_random_images_are_a_clamped_image_dataset():
    common = load("_bench_common")
    data = common.random_images(10, 16)
    assert data.kind == "image" and data.shape == (3, 16, 16) and data.train.shape == (10, 3, 16, 16)
    assert data.train.min() >= -1 and data.train.max() <= 1
    # clamped standard normals: about 68 % of entries are inside (-1, 1)
    inside = ((data.train > -1) & (data.train < 1)).float().mean().item()
    assert 0.6 < inside < 0.76
