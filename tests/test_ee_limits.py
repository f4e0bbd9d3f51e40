"""Batching arithmetic against Earth Engine's request limits, error classification and bounded retries."""

from __future__ import annotations

import json

import ee
import httplib2
import pytest
from googleapiclient.errors import HttpError
from hypothesis import given
from hypothesis import strategies as st

from geesoil.ee import limits
from geesoil.ee.limits import RetryPolicy, call_with_retries, classify
from geesoil.errors import EarthEngineError


def test_limits_are_earth_engines_documented_values():
    assert limits.COMPUTE_PIXELS_BYTE_LIMIT == 48 * 1024 * 1024
    assert limits.MAX_FEATURES_PER_REQUEST == 5000
    assert limits.MAX_CONCURRENT_REQUESTS == 40
    assert limits.REQUEST_PAYLOAD_LIMIT == 10 * 1024 * 1024
    assert limits.MAX_PIXELS_PER_SIDE == 32768
    assert limits.MAX_BANDS == 1024
    assert 1 <= limits.DEFAULT_WORKERS < limits.MAX_CONCURRENT_REQUESTS


def test_small_features_are_capped_by_the_feature_limit():
    # ~300 bytes per point feature: 8 MB of room would hold ~28000, the 5000-feature limit binds
    assert limits.features_per_batch(300) == 5000


def test_large_features_are_capped_by_the_payload_limit():
    n = limits.features_per_batch(4000, base_bytes=100_000)
    assert n == int((10 * 2**20 * 0.8 - 100_000) // 4000)  # 2072
    assert n * 4000 + 100_000 <= 10 * 2**20


def test_request_that_cannot_fit_is_a_user_error():
    with pytest.raises(EarthEngineError, match="payload limit"):
        limits.features_per_batch(1000, base_bytes=9 * 2**20)


@given(
    per=st.floats(min_value=1, max_value=2e6),
    base=st.floats(min_value=0, max_value=4e6),
)
def test_batches_never_exceed_either_limit(per, base):
    n = limits.features_per_batch(per, base)
    assert 1 <= n <= limits.MAX_FEATURES_PER_REQUEST
    assert base + n * per <= limits.REQUEST_PAYLOAD_LIMIT


@given(n=st.integers(0, 20000), size=st.integers(1, 5000))
def test_batch_slices_cover_every_row_once(n, size):
    slices = limits.batch_slices(n, size)
    rows = [i for s in slices for i in range(s.start, s.stop)]
    assert rows == list(range(n))
    assert all(0 < s.stop - s.start <= size for s in slices)


def test_pixel_chunks_stay_under_48_mb():
    side = limits.pixel_chunk_side(1, 4)
    assert side == 2048  # 2048² px × (4 + 1 mask) bytes = 20 MB; 4096² would be 80 MB
    assert side * side * 5 <= limits.COMPUTE_PIXELS_BYTE_LIMIT
    assert (2 * side) ** 2 * 5 > limits.COMPUTE_PIXELS_BYTE_LIMIT * limits.SAFETY
    assert limits.pixel_chunk_side(32, 8) == 256  # 256² × 32 × 9 = 18.9 MB; 512² would be 75 MB


@given(bands=st.integers(1, 1024), nbytes=st.sampled_from([1, 2, 4, 8]))
def test_pixel_chunks_fit_for_any_band_count(bands, nbytes):
    side = limits.pixel_chunk_side(bands, nbytes)
    assert 1 <= side <= limits.MAX_PIXELS_PER_SIDE
    assert side * side * bands * (nbytes + 1) <= limits.COMPUTE_PIXELS_BYTE_LIMIT


def test_too_many_bands_is_refused():
    with pytest.raises(EarthEngineError, match="1024"):
        limits.pixel_chunk_side(1025)


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(retries=8, base_s=0.5, max_s=10, jitter=False)
    assert [policy.delay(k) for k in range(6)] == [0.5, 1, 2, 4, 8, 10]
    jittered = RetryPolicy(base_s=1, max_s=100)
    assert all(0.5 * 2**k <= jittered.delay(k) <= 2**k for k in range(5))


def ee_http_error(status: int, message: str) -> ee.EEException:
    """The exception earthengine-api raises for an HTTP error: EEException with the HttpError as context."""
    resp = httplib2.Response({"status": status})
    content = json.dumps({"error": {"code": status, "message": message}}).encode()
    try:
        try:
            raise HttpError(resp, content)
        except HttpError as e:
            raise ee.EEException(e._get_reason())  # noqa: B904 - as ee.data._execute_cloud_call does
    except ee.EEException as exc:
        return exc


@pytest.mark.parametrize(
    "exc, kind",
    [
        (ee_http_error(429, "Too many concurrent aggregations."), "transient"),
        (ee_http_error(503, "The service is currently unavailable."), "transient"),
        (ee_http_error(500, "An internal error has occurred"), "transient"),
        (ee_http_error(400, "User memory limit exceeded."), "memory"),
        (ee_http_error(400, "Image.select: Pattern 'nope' did not match any bands."), "fatal"),
        (ee_http_error(403, "Permission denied."), "fatal"),
        (json.JSONDecodeError("Expecting value", "{", 1), "transient"),
        (ConnectionResetError("reset by peer"), "transient"),
        (KeyError("bug"), None),
    ],
)
def test_classify(exc, kind):
    assert classify(exc) == kind


class Flaky:
    """Fails with the given exceptions in turn, then returns the tileScale it was called with."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.scales: list[float] = []

    def __call__(self, tile_scale: float) -> float:
        self.scales.append(tile_scale)
        if self.errors:
            raise self.errors.pop(0)
        return tile_scale


def test_transient_errors_are_retried_with_backoff():
    slept: list[float] = []
    fn = Flaky(ee_http_error(429, "Too many concurrent aggregations."), ee_http_error(503, "unavailable"))
    policy = RetryPolicy(retries=3, base_s=1, jitter=False)
    assert call_with_retries(fn, policy=policy, sleep=slept.append) == 1.0
    assert slept == [1, 2] and len(fn.scales) == 3


def test_retries_are_bounded_then_reported_in_one_line():
    slept: list[float] = []
    fn = Flaky(*[ee_http_error(503, "The service is\ncurrently unavailable.")] * 10)
    with pytest.raises(EarthEngineError) as err:
        call_with_retries(fn, policy=RetryPolicy(retries=2, base_s=0.1), what="batch 3/9", sleep=slept.append)
    assert len(fn.scales) == 3 and len(slept) == 2
    msg = str(err.value)
    assert "batch 3/9" in msg and "after 3 attempts" in msg and "\n" not in msg


def test_memory_errors_raise_tile_scale():
    fn = Flaky(
        ee_http_error(400, "User memory limit exceeded."), ee_http_error(400, "User memory limit exceeded.")
    )
    assert call_with_retries(fn, sleep=lambda s: None) == 4.0
    assert fn.scales == [1.0, 2.0, 4.0]


def test_memory_errors_stop_at_the_maximum_tile_scale():
    fn = Flaky(*[ee_http_error(400, "User memory limit exceeded.")] * 10)
    with pytest.raises(EarthEngineError, match="tileScale=16"):
        call_with_retries(fn, sleep=lambda s: None)
    assert fn.scales == [1, 2, 4, 8, 16]


def test_fatal_errors_are_not_retried():
    fn = Flaky(ee_http_error(400, "Image.select: Pattern 'nope' did not match any bands."))
    with pytest.raises(EarthEngineError, match="did not match"):
        call_with_retries(fn, sleep=lambda s: pytest.fail("slept on a fatal error"))
    assert len(fn.scales) == 1


def test_bugs_propagate_unchanged():
    with pytest.raises(KeyError):
        call_with_retries(Flaky(KeyError("x")), sleep=lambda s: None)
