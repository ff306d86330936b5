"""Training parts without bags: the seed's triplet loss, the masked L1, triplets from geotags, mining, the config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vbl_ros.config import from_dict
from vbl_ros.errors import ConfigError
from vbl_ros.training import TrainConfig
from vbl_ros.training.losses import masked_l1_sum, triplet_losses
from vbl_ros.training.mining import TrainingTuple, TupleBatch, mine
from vbl_ros.training.triplets import find_triplets


def _unit(*rows: list[float]) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True)


def test_triplet_loss_is_the_seed_formula_with_distances_not_squared() -> None:
    # rows: q, p, n1, n2 (tuple 0); q2, p2, n3 (tuple 1)
    d = _unit([1, 0], [0.8, 0.6], [0, 1], [0.9, 0.1], [0, 1], [0.1, 1], [1, 0.05])
    loss = triplet_losses(
        d,
        query=torch.tensor([0, 4]),
        positive=torch.tensor([1, 5]),
        negative=torch.tensor([2, 3, 6]),
        pair_tuple=torch.tensor([0, 0, 1]),
        margin=0.1,
    )
    dist = lambda i, j: float(np.linalg.norm(d[i].numpy() - d[j].numpy()))  # noqa: E731
    hinge = lambda q, p, n: max(0.0, 0.1 + dist(q, p) - dist(q, n))  # noqa: E731
    expected = [(hinge(0, 1, 2) + hinge(0, 1, 3)) / 2, hinge(4, 5, 6)]  # averaged over each query's negatives
    assert loss.tolist() == pytest.approx(expected, abs=1e-12)
    assert expected[0] > 0 and hinge(0, 1, 2) == 0.0  # one easy negative, one violating


def test_triplet_loss_gradient_is_finite_for_identical_descriptors() -> None:
    d = _unit([1, 0], [1, 0], [0, 1]).requires_grad_(True)
    loss = triplet_losses(d, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), torch.tensor([0]), 2.0)
    loss.sum().backward()
    assert torch.isfinite(d.grad).all()


def test_masked_l1_counts_pixels_with_a_return_only() -> None:
    target = torch.tensor([[[[0.0, 0.5], [0.2, 0.0]]]])
    prediction = torch.tensor([[[[0.9, 0.4], [0.5, 0.7]]]])
    total, count = masked_l1_sum(prediction, target)
    assert count == 2 and float(total) == pytest.approx(0.1 + 0.3)


def _line_of_drives() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two drives along x (frames every 2 m, 0..98 m), heading east; a third frame set heading west."""
    x = np.arange(0.0, 100.0, 2.0)
    positions = np.concatenate([np.stack([x, np.zeros_like(x)], 1), np.stack([x + 0.5, np.ones_like(x)], 1)])
    headings = np.zeros(len(positions))
    drives = np.repeat([0, 1], len(x))
    return positions, headings, drives


def test_positives_come_from_other_drives_within_radius_and_heading() -> None:
    positions, headings, drives = _line_of_drives()
    headings[len(headings) // 2 + 10] = np.deg2rad(170)  # drive 1 at 20.5 m faces the other way
    t = find_triplets(positions, headings, drives, pos_radius_m=3.0, max_heading_deg=20.0, neg_radius_m=25.0)
    q = int(np.flatnonzero(t.queries == 10)[0])  # drive 0 at 20 m
    assert sorted(positions[t.positives[q], 0]) == [18.5, 22.5]  # 20.5 faces the other way
    negatives = t.sample_negatives(q, 1000, np.random.default_rng(0))
    assert len(negatives) == len(set(negatives.tolist()))
    assert np.all(np.linalg.norm(positions[negatives] - positions[10], axis=1) > 25.0)
    within = np.linalg.norm(positions - positions[10], axis=1) > 25.0
    assert len(negatives) == int(within.sum())  # all of them when the pool is large


def test_positive_radius_includes_both_neighbours() -> None:
    positions, headings, drives = _line_of_drives()
    t = find_triplets(positions, headings, drives, pos_radius_m=3.0, max_heading_deg=20.0, neg_radius_m=25.0)
    q = int(np.flatnonzero(t.queries == 10)[0])
    assert sorted(positions[t.positives[q], 0]) == [18.5, 20.5, 22.5]
    assert all(
        drives[t.positives[i]].tolist() == [1 - drives[t.queries[i]]] * len(t.positives[i])
        for i in range(len(t))
    )


def test_partial_mining_takes_the_best_positive_and_the_hardest_violating_negatives() -> None:
    positions, headings, drives = _line_of_drives()
    t = find_triplets(positions, headings, drives, pos_radius_m=3.0, max_heading_deg=20.0, neg_radius_m=25.0)
    q = int(np.flatnonzero(t.queries == 10)[0])
    rng = np.random.default_rng(0)
    cache = rng.normal(size=(len(positions), 8))
    cache /= np.linalg.norm(cache, axis=1, keepdims=True)
    best_positive = t.positives[q][np.argmin(np.linalg.norm(cache[t.positives[q]] - cache[10], axis=1))]
    tuples, stats = mine(t, [q], np.random.default_rng(1), mode="partial", num_negatives=3,
                         negative_pool=1000, margin=0.5, cache=cache)  # fmt: skip
    assert stats.tuples == 1 and tuples[0].positive == best_positive
    d_pos = np.linalg.norm(cache[best_positive] - cache[10])
    pool = t.sample_negatives(q, 1000, np.random.default_rng(1))  # the same draw
    d_neg = np.linalg.norm(cache[pool] - cache[10], axis=1)
    violating = pool[d_neg < d_pos + 0.5]
    hardest = violating[np.argsort(np.linalg.norm(cache[violating] - cache[10], axis=1))[:3]]
    assert tuples[0].negatives == tuple(hardest.tolist())

    # the query's own descriptor far from every negative: nothing violates, the query is skipped
    cache[10] = cache[best_positive]
    cache[pool] = -cache[10]
    tuples, stats = mine(t, [q], np.random.default_rng(1), mode="partial", num_negatives=3,
                         negative_pool=1000, margin=0.5, cache=cache)  # fmt: skip
    assert tuples == [] and stats.tuples == 0


def test_random_mining_and_the_batch_layout() -> None:
    positions, headings, drives = _line_of_drives()
    t = find_triplets(positions, headings, drives, pos_radius_m=3.0, max_heading_deg=20.0, neg_radius_m=25.0)
    tuples, stats = mine(t, [0, 5], np.random.default_rng(0), mode="random", num_negatives=4,
                         negative_pool=10, margin=0.1)  # fmt: skip
    assert stats.tuples == 2 and all(len(x.negatives) == 4 for x in tuples)
    assert math.isnan(stats.mean_violation)
    batch = TupleBatch.from_tuples([TrainingTuple(7, 8, (1, 2)), TrainingTuple(3, 4, (5,))])
    assert batch.frames.tolist() == [7, 8, 1, 2, 3, 4, 5]
    assert batch.query.tolist() == [0, 4] and batch.positive.tolist() == [1, 5]
    assert batch.negative.tolist() == [2, 3, 6] and batch.pair_tuple.tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "three"}, "must be an integer"),
        ({"margin": "0.1"}, "must be a number"),
        ({"learning_rate": 1e-4}, "unknown key"),
        ({"variant": "depth"}, "variant 'depth'"),
        ({"neg_radius_m": 5.0}, "must exceed pos_radius_m"),
        ({"val_bag": "x"}, "both val_bag and map_bag"),
        ({"model": {"input_height": 16}}, "at least 32x32"),
    ],
)
def test_bad_config_values_are_named_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, values)


def test_fewer_than_two_training_drives_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least two"):
        TrainConfig(train_bags=("one",)).check_bags()
