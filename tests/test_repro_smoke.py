"""The bench/repro_*.py reproduction scripts run end to end with --quick, and their own math
(paired entropy change, quadrature, clipped Analytic-DPM variance) matches closed forms for
Gaussian data."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
pytest.importorskip("matplotlib")


def load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def run_quick(name: str, tmp_path: Path, *extra: str) -> dict:
    module = load(name)
    results = module.main(["--quick", "--out-dir", str(tmp_path), *extra])
    written = json.loads(Path(tmp_path / f"{name.removeprefix('repro_')}.json").read_text())
    assert written, f"{name} wrote an empty results file"
    for png in tmp_path.glob("*.png"):
        assert 0 < png.stat().st_size < 200_000, f"{png.name} is {png.stat().st_size} bytes"
    return results


# ------------------------------------------------------------------ closed-form checks
class _Gaussian:
    """A one-component isotropic mixture N(mean, std^2 I) (duck-typed GaussianMixture)."""

    def __init__(self, mean, std):
        self.means = np.asarray([mean], dtype=np.float64)
        self.std = std
        self.weights = np.ones(1)


def _gaussian_marginal_variance(schedule, std, t):
    abar = 1.0 if t < 0 else schedule.alphas_cumprod[t]
    return abar * std**2 + 1.0 - abar


@pytest.mark.parametrize("std", [0.5, 1.7])
def test_paired_entropy_change_matches_gaussian_closed_form(std):
    entropy = load("repro_true_entropy")
    from core.mixture import MixtureReverseProcess
    from core.schedule import NoiseSchedule

    schedule = NoiseSchedule.from_name("cosine", 100)
    process = MixtureReverseProcess(_Gaussian([0.3, -0.2], std), schedule)
    rng = np.random.default_rng(1)
    for t in (1, 40, 80):
        # H(X_{t-1}) - H(X_t) = D/2 log(s_{t-1}^2 / s_t^2) for Gaussian marginals
        exact = np.log(_gaussian_marginal_variance(schedule, std, t - 1)
                       / _gaussian_marginal_variance(schedule, std, t))
        estimate = entropy.paired_entropy_change(process, t, 2000, rng)
        assert abs(estimate.value - exact) < 1e-9 + 5 * estimate.stderr
        quadrature = (entropy.quadrature_entropy(process, t - 1, points=301)
                      - entropy.quadrature_entropy(process, t, points=301))
        assert quadrature == pytest.approx(exact, abs=1e-7)
        # std > 1: the marginal entropy shrinks, so H(X_{t-1}|X_t) exceeds D/2 log(2 pi e beta)
        assert (exact > 0) == (std > 1)


# ------------------------------------------------------------------ the scripts
def test_schedule_ratio_script(tmp_path):
    results = run_quick("repro_schedule_ratio", tmp_path)
    # beta-tilde_1 / beta_1 = beta_0 / (1 - (1 - beta_0)(1 - beta_1)), linear T = 1000
    b0, b1 = 1e-4, 1e-4 + (0.02 - 1e-4) / 999
    assert results["curves"]["linear_T1000"]["ratio_at_t1"] == pytest.approx(
        b0 / (1 - (1 - b0) * (1 - b1)), rel=1e-12)
    fractions = [results["curves"][f"cosine_T{T}"]["fraction_below"] for T in (100, 1000, 10000)]
    assert fractions[0] > fractions[1] > fractions[2]
    assert (tmp_path / "schedule_ratio.png").exists()


@pytest.mark.slow
def test_true_entropy_script(tmp_path):
    results = run_quick("repro_true_entropy", tmp_path, "--datasets", "8gaussians")
    data = results["datasets"]["8gaussians"]
    assert data["data_variance_per_dim"] == pytest.approx(2.0 + 0.2**2)
    for row in data["quadrature_check"]:
        assert abs(row["quadrature"] - row["paired_mc"]) < 5 * row["paired_mc_err"] + 1e-6
    for view in ("full", "respaced"):
        truth = data[view]["truth"]
        # conditioning cannot raise entropy: the truth never falls below the lower bound
        assert np.all(truth["true_entropy"] > truth["lower"] - 5 * truth["true_entropy_err"])
        # the valid upper bound D/2 log(2 pi e beta / alpha) holds
        assert np.all(truth["true_entropy"] < truth["corrected_upper"] + 5 * truth["true_entropy_err"])
    assert (tmp_path / "true_entropy_8gaussians.png").exists()
    assert (tmp_path / "true_entropy_8gaussians_10steps.png").exists()


@pytest.mark.slow
def test_nll_comparison_and_vlb_terms_scripts(tmp_path):
    results = run_quick("repro_nll_comparison", tmp_path)
    assert set(results["runs"]) == {"A_linear_fixed_simple", "B_cosine_learned_hybrid",
                                    "C_cosine_learned_vlb_is"}
    for run in results["runs"].values():
        assert np.isfinite(run["nll_bpd"]) and run["nll_stderr"] > 0
        assert len(run["vb_mean"]) == 20
        # full-loop total = sum of its terms + prior
        assert run["full_loop_bpd"] == pytest.approx(sum(run["vb_mean"]) + run["prior_bpd"], rel=1e-6)
    terms = load("repro_vlb_terms").main(
        ["--results", str(tmp_path / "nll_comparison.json"), "--out-dir", str(tmp_path)])
    assert set(terms["runs"]) == set(results["runs"])
    assert (tmp_path / "vlb_terms.png").exists()


@pytest.mark.slow
def test_sampling_steps_script(tmp_path):
    results = run_quick("repro_sampling_steps", tmp_path)
    assert len(results["variants"]) == 5
    for name, rows in results["variants"].items():
        assert [r["steps"] for r in rows] == [20, 10, 5]
        assert ("nll_nats_per_dim" in rows[0]) == name.startswith("DDPM")
    assert (tmp_path / "sampling_steps.png").exists()


def test_entropy_convergence_script(tmp_path):
    results = run_quick("repro_entropy_convergence", tmp_path)
    assert [row["step"] for row in results["rows"]] == [20, 40]
    last = results["last"]
    # learned_range starts at v = 1/2, so the first probes sit near the middle of the bounds
    assert np.all(np.abs(last["learned"] - 0.5) < 0.5)
    # the truth for the 8-Gaussian ring (variance 2.04) ends above the upper bound
    assert last["true"][-1] > 1.5
