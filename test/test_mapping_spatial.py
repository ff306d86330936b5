"""Searching only near a place: the grid finds exactly the keyframes in the disc, and the local search
ranks them as an exact search restricted to those keyframes would."""

from __future__ import annotations

import numpy as np
import pytest

from vbl_ros.errors import ConfigError
from vbl_ros.mapping.spatial import SpatialGrid, search_near


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("cell_m", [7.0, 50.0, 400.0])
def test_grid_returns_exactly_the_keyframes_in_the_disc(cell_m: float) -> None:
    rng = np.random.default_rng(0)
    positions = rng.uniform(-1000, 1000, size=(5000, 3))
    grid = SpatialGrid(positions, cell_m)
    for center, radius in [
        ((0.0, 0.0), 100.0),
        ((-999.0, 998.0), 30.0),
        ((5000.0, 0.0), 50.0),
        ((13.3, -7.1), 0.0),
    ]:
        expected = np.flatnonzero(
            np.hypot(positions[:, 0] - center[0], positions[:, 1] - center[1]) <= radius
        )
        np.testing.assert_array_equal(grid.within(center, radius), expected)


def test_search_near_equals_exact_search_over_the_disc() -> None:
    rng = np.random.default_rng(1)
    positions = np.cumsum(rng.normal(0, 3, size=(3000, 3)), axis=0)
    descriptors = _unit(rng.standard_normal((3000, 64)))
    grid = SpatialGrid(positions, 25.0)
    center, radius = positions[1500, :2], 60.0
    query = descriptors[1500] + 0.1 * _unit(rng.standard_normal((1, 64)))[0]
    scores, ids = search_near(descriptors, grid, query, 10, center, radius)
    inside = np.flatnonzero(np.linalg.norm(positions[:, :2] - center, axis=1) <= radius)
    exact = inside[np.argsort(-(descriptors[inside] @ query), kind="stable")][:10]
    np.testing.assert_array_equal(ids[0], exact)
    np.testing.assert_allclose(scores[0], descriptors[exact] @ query, rtol=1e-5)
    assert ids[0, 0] == 1500


def test_search_near_pads_when_the_disc_holds_fewer_than_k() -> None:
    positions = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [500.0, 0.0, 0.0]])
    descriptors = _unit(np.eye(3, 8))
    grid = SpatialGrid(positions)
    scores, ids = search_near(descriptors, grid, descriptors[1], 4, (0.0, 0.0), 20.0)
    assert ids.tolist() == [[1, 0, -1, -1]]
    assert np.isneginf(scores[0, 2:]).all()
    scores, ids = search_near(descriptors, grid, descriptors[1], 4, (-900.0, 0.0), 20.0)
    assert (ids == -1).all()


def test_grid_refuses_a_cell_size_that_is_not_positive() -> None:
    with pytest.raises(ConfigError, match="cell size"):
        SpatialGrid(np.zeros((2, 3)), 0.0)
