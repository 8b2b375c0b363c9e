"""Image scores: the Fréchet distance against closed forms and an eigenvalue reference,
KID against the closed-form MMD^2 of a cubic kernel between Gaussians, and the feature
network: accuracy on the 8x8 digits, determinism, the cache (loaded without training,
rebuilt when unusable, placed by the environment variable)."""

from __future__ import annotations

import dataclasses
import math
import shutil
import warnings
from itertools import product

import numpy as np
import pytest
import torch

import core.quality.features as features
from core.data import get_dataset
from core.quality.features import (
    CACHE_ENV,
    FeatureCacheWarning,
    FeatureSettings,
    cache_path,
    feature_extractor,
)
from core.quality.images import (
    fd_label,
    frechet_distance,
    frechet_distance_gaussians,
    image_scores,
    kid,
    kid_label,
    mmd2_unbiased,
)

FAST = FeatureSettings(steps=120)


def random_spd(dim, rng):
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def psd_sqrt(c):
    values, vectors = np.linalg.eigh(c)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_reference(mean_a, cov_a, mean_b, cov_b):
    """tr (C_a C_b)^{1/2} = tr (C_a^{1/2} C_b C_a^{1/2})^{1/2}: symmetric, by eigh."""
    root_a = psd_sqrt(cov_a)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


# ---------------------------------------------------------------- Fréchet distance

def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    closed = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    value = frechet_distance_gaussians(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert value == pytest.approx(closed, rel=1e-12)


def test_frechet_distance_of_full_covariances_matches_the_eigenvalue_form():
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.standard_normal(16), rng.standard_normal(16)
    cov_a, cov_b = random_spd(16, rng), random_spd(16, rng)
    value = frechet_distance_gaussians(mean_a, cov_a, mean_b, cov_b)
    assert value == pytest.approx(frechet_reference(mean_a, cov_a, mean_b, cov_b), rel=1e-9)
    assert frechet_distance_gaussians(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_refuses_a_genuinely_complex_root():
    with pytest.raises(ArithmeticError, match="imaginary"):
        frechet_distance_gaussians(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_frechet_distance_of_features_converges_to_the_gaussians_and_to_zero():
    rng = np.random.default_rng(1)
    dim, n = 8, 20000
    mean_b = np.full(dim, 0.3)
    cov_a, cov_b = random_spd(dim, rng), random_spd(dim, rng)
    a = rng.multivariate_normal(np.zeros(dim), cov_a, size=n)
    b = rng.multivariate_normal(mean_b, cov_b, size=n)
    truth = frechet_reference(np.zeros(dim), cov_a, mean_b, cov_b)
    shifted = frechet_distance(a, b)
    assert shifted == pytest.approx(truth, rel=0.05)     # within 0.03 over 15 seeds
    same = frechet_distance(a, rng.multivariate_normal(np.zeros(dim), cov_a, size=n))
    assert 0 <= same < 0.01 * shifted                    # ~0.0007 x over 15 seeds


# ---------------------------------------------------------------- KID

def cubic_kernel_mmd2(mean_a, cov_a, mean_b, cov_b):
    """MMD^2 of k(x, y) = (x.y/F + 1)^3 = sum_j C(3, j) (x.y / F)^j between Gaussians: the
    kernel's feature map is the tensor powers, so MMD^2 = sum_j C(3, j) / F^j
    |E x^{(x)j} - E y^{(x)j}|^2, with E x(x)x = C + m m and
    E x_i x_j x_k = m_i m_j m_k + m_i C_jk + m_j C_ik + m_k C_ij."""
    dim = len(mean_a)

    def moments(m, c):
        third = np.einsum("i,j,k->ijk", m, m, m)
        third += np.einsum("i,jk->ijk", m, c) + np.einsum("j,ik->ijk", m, c) + np.einsum("k,ij->ijk", m, c)
        return m, c + np.outer(m, m), third

    return sum(math.comb(3, j) / dim**j * np.sum((ma - mb) ** 2)
               for j, ma, mb in zip((1, 2, 3), moments(mean_a, cov_a), moments(mean_b, cov_b), strict=True))


def test_mmd2_unbiased_equals_a_brute_force_double_sum():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3)) + 0.2

    def k(u, v):
        return (float(np.dot(u, v)) / 3 + 1) ** 3

    m = len(x)
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in product(range(m), repeat=2) if i != j)
    cross = sum(k(x[i], y[j]) for i, j in product(range(m), repeat=2))
    assert mmd2_unbiased(x, y) == pytest.approx(within / (m * (m - 1)) - 2 * cross / m**2, rel=1e-12)


def test_kid_is_zero_in_expectation_for_one_law():
    """The mean of 40 independent KID values, each from fresh draws of one law, is 0
    within the standard error of that mean (their spread, not KID's own stderr)."""
    rng = np.random.default_rng(3)
    cov = random_spd(3, rng)
    means = [kid(rng.multivariate_normal(np.zeros(3), cov, size=1000),
                 rng.multivariate_normal(np.zeros(3), cov, size=1000), subsets=5)[0]
             for _ in range(40)]
    assert abs(np.mean(means)) < 3 * np.std(means, ddof=1) / math.sqrt(len(means))


def test_kid_of_shifted_gaussians_is_the_closed_form_mmd2():
    rng = np.random.default_rng(5)
    dim, n = 3, 10000
    cov = random_spd(dim, rng)
    shift = np.array([0.8, 0.0, -0.4])
    a = rng.multivariate_normal(np.zeros(dim), cov, size=n)
    mean, stderr = kid(a, rng.multivariate_normal(shift, cov, size=n), subsets=20)
    truth = cubic_kernel_mmd2(np.zeros(dim), cov, shift, cov)
    assert truth > 10 * stderr and abs(mean - truth) < 4 * stderr


def test_kid_error_bar_matches_the_spread_over_repetitions():
    rng = np.random.default_rng(4)
    means, stderrs = [], []
    for _ in range(30):
        a = rng.standard_normal((400, 4))
        b = rng.standard_normal((400, 4)) + 0.1
        mean, stderr = kid(a, b, subsets=8)
        means.append(mean)
        stderrs.append(stderr)
    ratio = np.mean(stderrs) / np.std(means, ddof=1)   # 0.7 to 1.4 over 20 seeds
    assert 0.6 < ratio < 1.6, ratio


def test_kid_refuses_more_subsets_than_the_data_hold():
    with pytest.raises(ValueError, match="disjoint"):
        kid(np.zeros((100, 2)), np.zeros((100, 2)), subsets=10, subset_size=20)


# ---------------------------------------------------------------- the feature network

@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", image_size=None)


@pytest.fixture(scope="module")
def built(digits, tmp_path_factory):
    """One extractor trained into a fresh cache folder, and its features of the test split."""
    folder = tmp_path_factory.mktemp("cache-a")
    extractor = feature_extractor(digits, folder, FAST)
    return folder, extractor, extractor(digits.test)


def test_classifier_reaches_its_accuracy_on_the_digits(built, digits):
    _, extractor, test_features = built
    assert extractor.mode == "classifier" and not extractor.loaded
    assert extractor.test_score > 0.9          # ~0.97 after 120 steps
    assert test_features.shape == (len(digits.test), 64) and test_features.dtype == np.float64
    assert fd_label(extractor) == "FD in digits-classifier features"
    assert kid_label(extractor) == "KID in digits-classifier features"


def test_two_builds_in_fresh_folders_give_identical_features(built, digits, tmp_path):
    _, _, test_features = built
    again = feature_extractor(digits, tmp_path, FAST)
    assert not again.loaded
    np.testing.assert_array_equal(again(digits.test), test_features)


def test_second_build_loads_the_cache_without_training(built, digits, monkeypatch):
    folder, first, test_features = built
    assert first.path is not None and first.path.is_file() and first.path.parent == folder / "features"

    def no_training(*_):
        raise AssertionError("trained although the cache holds the network")

    monkeypatch.setattr(features, "train_feature_net", no_training)
    loaded = feature_extractor(digits, folder, FAST)
    assert loaded.loaded and loaded.test_score == first.test_score
    np.testing.assert_array_equal(loaded(digits.test), test_features)


def test_cache_folder_comes_from_the_environment(digits, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    settings = FeatureSettings(steps=3)
    assert cache_path(digits, settings).parent == tmp_path / "features"
    extractor = feature_extractor(digits, settings=settings)
    assert extractor.path == cache_path(digits, settings) and extractor.path.is_file()


def test_a_corrupt_cache_file_is_rebuilt_with_a_warning_naming_it(built, digits, tmp_path, monkeypatch):
    _, first, test_features = built
    path = tmp_path / "features" / first.path.name
    path.parent.mkdir()
    path.write_bytes(b"\x00garbage, not a safetensors file" * 10)
    calls = []
    real_train = features.train_feature_net
    monkeypatch.setattr(features, "train_feature_net",
                        lambda *args: calls.append(1) or real_train(*args))
    with pytest.warns(FeatureCacheWarning, match="rebuilding") as caught:
        rebuilt = feature_extractor(digits, tmp_path, FAST)
    assert str(path) in str(caught[0].message)
    assert calls == [1] and not rebuilt.loaded
    np.testing.assert_array_equal(rebuilt(digits.test), test_features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert feature_extractor(digits, tmp_path, FAST).loaded   # the file is whole again


def test_a_cache_file_of_other_settings_is_not_used(built, digits, tmp_path):
    _, first, _ = built
    other = FeatureSettings(steps=4, learning_rate=1e-3)
    path = cache_path(digits, other, tmp_path)
    path.parent.mkdir()
    shutil.copy(first.path, path)                  # the right format, the wrong key
    with pytest.warns(FeatureCacheWarning, match="other settings"):
        rebuilt = feature_extractor(digits, tmp_path, other)
    assert not rebuilt.loaded and rebuilt.test_score < first.test_score


def test_unlabelled_images_get_an_autoencoder_that_beats_the_mean_image(digits, tmp_path):
    unlabelled = dataclasses.replace(digits, train_labels=None, test_labels=None, num_classes=None)
    extractor = feature_extractor(unlabelled, tmp_path, FeatureSettings(steps=150))
    assert extractor.mode == "autoencoder" and extractor.name == "digits-autoencoder"
    assert fd_label(extractor) == "FD in digits-autoencoder features"
    # 8x8 images, target 8x8: predicting the training mean image scores their variance
    mean_image = digits.train.mean(dim=0, keepdim=True)
    baseline = float(((digits.test - mean_image) ** 2).mean())
    assert extractor.test_score < 0.5 * baseline
    assert extractor(digits.test[:5]).shape == (5, 64)


def test_image_scores_separate_real_images_from_noise(built, digits):
    _, extractor, _ = built
    real = image_scores(digits.test, digits.train[:180], extractor, subsets=4)
    noise = torch.rand(180, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fake = image_scores(noise, digits.train[:180], extractor, subsets=4)
    assert real["count"] == 180 and real["fd_label"] == "FD in digits-classifier features"
    assert fake["fd"] > 5 * real["fd"]
    assert fake["kid"][0] > 5 * abs(real["kid"][0]) and fake["kid"][0] > 3 * fake["kid"][1]


def test_the_extractor_refuses_wrong_shapes_and_nonfinite_images(built):
    _, extractor, _ = built
    with pytest.raises(ValueError, match="shape"):
        extractor(torch.zeros(3, 1, 9, 9))
    bad = torch.zeros(2, 1, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        extractor(bad)
