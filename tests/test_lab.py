"""The sampler lab (core.lab, python -m core compare-samplers): runs planned to their NFE
budgets with honest call counts, the exact-eps curves falling to the data-vs-data floor as
NFE grows, and the command's outputs and refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import core.samplers as registry
from core.data import get_dataset
from core.lab import LabSettings, plan, point_scorer, run_lab, steps_for


def test_budgets_become_the_most_steps_that_fit():
    assert steps_for(registry.get_sampler("ddim"), 10, 100) == 10
    assert steps_for(registry.get_sampler("heun"), 10, 100) == 5          # 2 * 5 - 1 = 9 calls
    assert steps_for(registry.get_sampler("dpm_3s"), 10, 100) == 4        # 3 * 4 - 2 = 10
    assert steps_for(registry.get_sampler("ddim"), 500, 100) == 100       # at most T
    runs = plan(LabSettings(samplers=["heun", "rk45"], nfe=[1, 2, 3, 10]), 100)
    heun = [r for r in runs if r[0] == "heun"]
    assert [r[2] for r in heun] == [1, 2, 5]   # 2 calls fit 1 step again: not repeated
    assert len([r for r in runs if r[0] == "rk45"]) == 5                  # one per tolerance


def test_fixed_samplers_call_the_network_as_often_as_they_declare(ring):
    data, diffusion, model = ring
    names = [s.name for s in registry.samplers() if not s.adaptive]
    settings = LabSettings(samplers=names, nfe=[4, 30], n=50)
    points = run_lab(model, diffusion, (2,), settings, lambda x: {}, device="cpu")
    counted = {}
    import core.lab as lab

    for name in names:                              # count on the eager path directly
        spec = registry.get_sampler(name)
        steps = steps_for(spec, 30, diffusion.num_timesteps)
        calls = lab._CallCounter(model)
        options = {"langevin_steps": 3, "corrector_steps": 2}     # not the defaults
        lab.sample(calls, diffusion, 50, (2,), sampler=name, steps=steps, options=options,
                   record_every=10**9)
        counted[name] = (calls.count, spec.network_calls(steps, options))
    assert all(got == declared for got, declared in counted.values()), counted
    assert {p.sampler for p in points} == set(names)


def test_with_the_exact_eps_every_sampler_falls_to_the_data_floor(ring):
    data, diffusion, model = ring
    score, floor = point_scorer(data, 2000)
    names = list(registry.sampler_names())
    settings = LabSettings(samplers=names, nfe=[5, 20, 250], spacing="logsnr", n=2000, seed=1)
    points = run_lab(model, diffusion, (2,), settings, score)
    for name in names:
        runs = sorted((p for p in points if p.sampler == name), key=lambda p: p.nfe)
        coarse, fine = runs[0], runs[-1]
        error = math.hypot(fine.scores["knn_kl_stderr"], floor["knn_kl_stderr"])
        assert fine.scores["knn_kl"] <= floor["knn_kl"] + 4 * error, (name, fine.scores)
        assert fine.scores["knn_kl"] < coarse.scores["knn_kl"] or name == "rk45", name
        assert abs(fine.scores["energy_distance"] - floor["energy_distance"]) <= 4 * math.hypot(
            fine.scores["energy_distance_stderr"], floor["energy_distance_stderr"]), name
        assert fine.scores["precision"] > 0.95 and fine.scores["recall"] > 0.95, name


# ---------------------------------------------------------------------- the command
def test_compare_samplers_writes_its_report_table_and_plot(tmp_path, capsys):
    from PIL import Image

    from core.cli import main

    out = {ext: tmp_path / f"lab.{ext}" for ext in ("json", "csv", "png")}
    code = main(["compare-samplers", "--preset", "toy-2d", "--exact", "--samplers",
                 "ddim,unipc", "--nfe", "5,10", "--n", "300", "--json", str(out["json"]),
                 "--csv", str(out["csv"]), "--plot", str(out["png"])])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out["json"].read_text())
    assert [(p["sampler"], p["nfe"], p["model"]) for p in report["points"]] == [
        ("ddim", 5, "exact"), ("ddim", 10, "exact"), ("unipc", 5, "exact"), ("unipc", 10, "exact")]
    assert report["floor"]["knn_kl"] is not None and report["n"] == 300
    rows = out["csv"].read_text().splitlines()
    assert rows[0].startswith("sampler,model,target_nfe,nfe,steps") and len(rows) == 5
    with Image.open(out["png"]) as picture:
        assert picture.size == (900, 600)
    assert np.isfinite([p["knn_kl"] for p in report["points"]]).all()


@pytest.mark.parametrize("argv, words", [
    (["--samplers", "ddim,warp", "--json", "{tmp}/a.json"], "unknown 'warp'"),
    (["--samplers", "ddim", "--nfe", "5,0", "--json", "{tmp}/a.json"], "--nfe"),
    (["--samplers", "ddim"], "give --json, --csv and/or --plot"),
])
def test_compare_samplers_refuses_bad_requests_naming_the_flag(tmp_path, capsys, argv, words):
    from core.cli import main

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(["compare-samplers", "--preset", "toy-2d", "--exact", *argv])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------- images
def test_image_scores_separate_real_digits_from_noise_and_drop_non_finite_samples(tmp_path):
    from core.lab import image_scorer

    digits = get_dataset("digits", image_size=8, seed=0)
    score, floor = image_scorer(digits, 200, cache_dir=tmp_path)
    noise = np.random.default_rng(0).uniform(-1, 1, size=(200, 1, 8, 8)).astype(np.float32)
    scored = score(noise)
    assert "classifier features" in floor["fd_label"] and floor["finite_fraction"] == 1.0
    assert floor["fd"] * 5 < scored["fd"]          # real digits sit far closer than noise
    assert abs(floor["kid"]) < 4 * floor["kid_stderr"]      # 0 in expectation for real data
    assert scored["kid"] > floor["kid"] + 4 * math.hypot(floor["kid_stderr"], scored["kid_stderr"])
    noise[:50] = np.nan
    assert score(noise)["finite_fraction"] == 0.75


def test_compare_samplers_scores_an_image_model_by_fd(tmp_path, capsys):
    from core.cli import main
    from tests.test_cli import DIGITS, write_config

    ckpt = tmp_path / "digits.ckpt"
    assert main(["train", "--config", str(write_config(tmp_path, DIGITS)), "--out", str(ckpt)]) == 0
    report_path = tmp_path / "lab.json"
    code = main(["compare-samplers", "--checkpoint", str(ckpt), "--samplers", "ddim,dpmpp_2m",
                 "--nfe", "2,3", "--n", "100", "--json", str(report_path), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert len(report["points"]) == 4 and report["floor"]["fd"] >= 0
    assert all(np.isfinite(p["fd"]) and p["fd"] > report["floor"]["fd"] for p in report["points"])


def test_compare_samplers_runs_the_exact_eps_beside_a_learned_variance_model(tmp_path, capsys):
    """The exact eps has no variance channels: beside a learned-range model it runs on the
    same schedule with beta-tilde (core.exact.exact_diffusion)."""
    from core.cli import main
    from tests.test_cli import TOY, write_config

    config = dict(TOY, diffusion={**TOY["diffusion"], "variance_type": "learned_range",
                                  "loss_type": "hybrid"})
    ckpt = tmp_path / "learned.ckpt"
    assert main(["train", "--config", str(write_config(tmp_path, config)), "--out", str(ckpt)]) == 0
    out = tmp_path / "lab.json"
    code = main(["compare-samplers", "--checkpoint", str(ckpt), "--samplers", "ddpm,ddim",
                 "--nfe", "3", "--n", "100", "--json", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    models = sorted({(p["model"], p["sampler"]) for p in json.loads(out.read_text())["points"]})
    assert models == [("exact", "ddim"), ("exact", "ddpm"), ("model", "ddim"), ("model", "ddpm")]
