"""Cross-validation never leaks a location or a spatial block between train and test."""

from __future__ import annotations

import numpy as np
import pytest

from geesoil import cv


def _points(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Profiles over ~100 x 100 km around Edgeroi, with every fifth site sampled twice (duplicates)."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(149.3, 150.3, n)
    lat = rng.uniform(-30.8, -29.9, n)
    dup = np.arange(0, n, 5)
    return np.concatenate([lon, lon[dup]]), np.concatenate([lat, lat[dup]])


def _locations(lon: np.ndarray, lat: np.ndarray, idx: np.ndarray) -> set[tuple[float, float]]:
    return set(zip(np.round(lon[idx], 3), np.round(lat[idx], 3), strict=True))


@pytest.mark.parametrize("block_km", [None, 20.0])
def test_folds_partition_and_never_share_a_location(block_km: float | None) -> None:
    lon, lat = _points()
    folds = cv.kfold(lon, lat, k=5, block_km=block_km, seed=3)
    assert len(folds) == 5
    tests = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tests), np.arange(lon.size))  # every sample tested exactly once
    for f in folds:
        assert np.intersect1d(f.train, f.test).size == 0
        assert f.train.size + f.test.size == lon.size
        assert not _locations(lon, lat, f.train) & _locations(lon, lat, f.test)
    sizes = [f.test.size for f in folds]
    assert max(sizes) - min(sizes) <= 0.5 * np.mean(sizes)  # roughly balanced


def test_spatial_blocks_are_disjoint_between_train_and_test() -> None:
    lon, lat = _points()
    block_km = 25.0
    blocks = cv.block_ids(lon, lat, block_km)
    for f in cv.spatial_kfold(lon, lat, k=4, block_km=block_km, seed=1):
        assert not set(blocks[f.train]) & set(blocks[f.test])


def test_blocks_are_squares_of_the_requested_size() -> None:
    # every block's members fit within block_km in both projected directions
    lon, lat = _points(2000, seed=2)
    x, y = cv.project_laea(lon, lat)
    for block_km in (5.0, 50.0):
        ids = cv.block_ids(lon, lat, block_km)
        for b in np.unique(ids)[:50]:
            m = ids == b
            assert np.ptp(x[m]) <= block_km and np.ptp(y[m]) <= block_km


def test_laea_distances_are_metric() -> None:
    # 1 degree of latitude is ~111 km
    x, y = cv.project_laea([150.0, 150.0], [-30.0, -31.0])
    assert abs(y[0] - y[1]) == pytest.approx(110.9, abs=0.5)
    assert abs(x[0] - x[1]) < 1.0


def test_folds_are_reproducible_and_seed_dependent() -> None:
    lon, lat = _points()
    a = cv.spatial_kfold(lon, lat, k=5, block_km=20, seed=7)
    b = cv.spatial_kfold(lon, lat, k=5, block_km=20, seed=7)
    c = cv.spatial_kfold(lon, lat, k=5, block_km=20, seed=8)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.test, y.test) for x, y in zip(a, c, strict=True))


def test_too_few_blocks_is_a_user_error() -> None:
    lon, lat = _points()
    with pytest.raises(cv.FoldError, match="blocks"):
        cv.spatial_kfold(lon, lat, k=5, block_km=500)
    with pytest.raises(cv.FoldError, match="locations"):
        cv.random_kfold([150.0] * 10, [-30.0] * 10, k=3)


def test_default_block_size_gives_enough_blocks() -> None:
    lon, lat = _points()
    folds = cv.spatial_kfold(lon, lat, k=3)
    assert len(folds) == 3 and all(f.test.size for f in folds)


def test_learning_curve_draws_stay_in_training_fold() -> None:
    lon, lat = _points()
    fold = cv.random_kfold(lon, lat, k=5, seed=0)[0]
    draws = list(cv.learning_curve_draws(fold.train, [25, 50, 10_000, None], repeats=3, seed=0))
    assert [(s, r) for s, r, _ in draws] == [(25, 0), (25, 1), (25, 2), (50, 0), (50, 1), (50, 2), (None, 0)]
    for size, _, idx in draws:
        assert np.isin(idx, fold.train).all()
        assert not np.isin(idx, fold.test).any()
        assert idx.size == (size if size is not None else fold.train.size)
        assert np.unique(idx).size == idx.size
    assert not np.array_equal(draws[0][2], draws[1][2])  # repeats differ
