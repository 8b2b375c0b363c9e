"""The train/test split: a seeded partition whose splits come in shuffled order, so "the
first n items" of a split (bounds, likelihoods, sample-quality floors) are a uniform sample
even for sources sorted by class, such as MNIST 5k."""

from __future__ import annotations

import numpy as np

from core.data import get_dataset, split_indices


def test_split_is_a_seeded_partition_in_shuffled_order():
    train, test = split_indices(1000, seed=3)
    assert len(test) == 100 and sorted(np.concatenate([train, test]).tolist()) == list(range(1000))
    again = split_indices(1000, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.all(np.diff(train) > 0)            # not in source order


def test_the_first_items_of_mnist_splits_cover_every_class():
    data = get_dataset("mnist", image_size=8)
    train_counts = np.bincount(data.train_labels[:200].numpy(), minlength=10)
    test_counts = np.bincount(data.test_labels[:100].numpy(), minlength=10)
    assert (train_counts >= 8).all() and (test_counts >= 3).all(), (train_counts, test_counts)
