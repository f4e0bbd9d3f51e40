"""Earth Engine request limits as named constants, the batching arithmetic that obeys them, and bounded retries.

The limits are the documented quotas of the Earth Engine REST API
(https://developers.google.com/earth-engine/guides/usage and the ``projects.image.computePixels`` /
``projects.table.computeFeatures`` reference pages).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import ee

from geesoil.errors import EarthEngineError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: image:computePixels answers at most 48 MB per request (xee's REQUEST_BYTE_LIMIT is the same 2**20 * 48).
COMPUTE_PIXELS_BYTE_LIMIT = 48 * 2**20
#: computePixels grids are at most 32768 pixels per side.
MAX_PIXELS_PER_SIDE = 32768
#: computePixels returns at most 1024 bands per request.
MAX_BANDS = 1024
#: A collection sent or fetched in one request holds at most 5000 elements (features).
MAX_FEATURES_PER_REQUEST = 5000
#: A request payload (the serialised expression) may not exceed 10 MB.
REQUEST_PAYLOAD_LIMIT = 10 * 2**20
#: Earth Engine allows at most 40 concurrent interactive requests per project.
MAX_CONCURRENT_REQUESTS = 40
#: Our default concurrency: well under the quota, so other work in the project still gets through.
DEFAULT_WORKERS = 8
#: Fraction of a hard limit we aim for, leaving room for request framing and per-feature size variation.
SAFETY = 0.8
#: ``tileScale`` (reduceRegions/sampleRegions) is raised ×2 up to this on "User memory limit exceeded".
MAX_TILE_SCALE = 16.0

#: HTTP statuses worth retrying: rate limiting (429) and server-side trouble (5xx).
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSIENT_MESSAGES = (
    "too many concurrent",
    "quota exceeded",
    "rate limit",
    "internal error",
    "service unavailable",
)
_MEMORY_MESSAGE = "user memory limit exceeded"


class MalformedResponse(Exception):
    """Earth Engine answered 200 with something unparseable (truncated or garbled): retried like a 503."""


def features_per_batch(
    bytes_per_feature: float,
    base_bytes: float = 0.0,
    *,
    payload_limit: int = REQUEST_PAYLOAD_LIMIT,
    max_features: int = MAX_FEATURES_PER_REQUEST,
    safety: float = SAFETY,
) -> int:
    """How many features fit one request: under ``safety`` × the payload limit and at most ``max_features``."""
    if bytes_per_feature <= 0:
        raise ValueError(f"bytes_per_feature must be positive, got {bytes_per_feature}")
    room = payload_limit * safety - base_bytes
    if room < bytes_per_feature:
        raise EarthEngineError(
            f"one feature's request ({base_bytes + bytes_per_feature:.0f} bytes) does not fit the Earth Engine "
            f"payload limit ({payload_limit} bytes); request fewer covariates at a time"
        )
    return max(1, min(max_features, int(room // bytes_per_feature)))


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """``[0, n)`` cut into consecutive slices of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def pixel_chunk_side(
    n_bands: int,
    bytes_per_value: int = 4,
    *,
    byte_limit: int = COMPUTE_PIXELS_BYTE_LIMIT,
    safety: float = SAFETY,
) -> int:
    """Largest power-of-two square side whose computePixels answer for ``n_bands`` stays under the byte limit.

    Earth Engine counts one mask byte per value on top of the data (xee does the same), hence ``bytes + 1``.
    """
    if not 1 <= n_bands <= MAX_BANDS:
        raise EarthEngineError(
            f"{n_bands} bands requested; Earth Engine serves 1 to {MAX_BANDS} bands per request"
        )
    per_pixel = n_bands * (bytes_per_value + 1)
    side = math.isqrt(int(byte_limit * safety // per_pixel))
    if side < 1:
        raise EarthEngineError(f"a single pixel of {n_bands} bands exceeds the computePixels limit")
    side = 2 ** int(math.log2(side))
    return min(side, MAX_PIXELS_PER_SIDE)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: delay ``base_s * 2**k`` (capped at ``max_s``), at most ``retries`` retries."""

    retries: int = 5
    base_s: float = 0.5
    max_s: float = 30.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        d = min(self.max_s, self.base_s * 2**attempt)
        return d * random.uniform(0.5, 1.0) if self.jitter else d


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an ``ee.EEException`` (earthengine-api keeps the HttpError as ``__context__``)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        resp = getattr(cur, "resp", None)
        status = getattr(resp, "status", None)
        if status is not None:
            return int(status)
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def classify(exc: BaseException) -> str | None:
    """``"memory"``, ``"transient"`` (retry), ``"fatal"`` (Earth Engine said no) or None (not an EE problem: a bug)."""
    message = str(exc).lower()
    if isinstance(exc, ee.EEException):
        if _MEMORY_MESSAGE in message:
            return "memory"
        status = http_status(exc)
        if status in RETRYABLE_STATUS or any(m in message for m in _TRANSIENT_MESSAGES):
            return "transient"
        return "fatal"
    if isinstance(exc, MalformedResponse | json.JSONDecodeError | ConnectionError | TimeoutError):
        return "transient"  # malformed/truncated answers and dropped connections
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httplib2", "requests", "urllib3")):
        return "transient"
    return None


def call_with_retries(
    fn: Callable[[float], T],
    *,
    policy: RetryPolicy | None = None,
    what: str = "Earth Engine request",
    tile_scale: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn(tile_scale)`` with bounded retries: backoff on 429/5xx/network trouble, doubled ``tileScale`` on memory.

    Raises :class:`EarthEngineError` (one line, naming ``what``) once retries are spent or the error is not retryable.
    """
    policy = policy or RetryPolicy()
    attempt = 0
    while True:
        try:
            return fn(tile_scale)
        except Exception as exc:
            kind = classify(exc)
            if kind is None:
                raise
            msg = " ".join(str(exc).split()) or type(exc).__name__
            if kind == "memory" and tile_scale < MAX_TILE_SCALE:
                tile_scale = min(MAX_TILE_SCALE, tile_scale * 2)
                log.info("%s: out of memory, retrying with tileScale=%g", what, tile_scale)
                continue
            if kind == "transient" and attempt < policy.retries:
                delay = policy.delay(attempt)
                attempt += 1
                log.info("%s failed (%s); retry %d/%d in %.2f s", what, msg, attempt, policy.retries, delay)
                sleep(delay)
                continue
            tries = f" after {attempt + 1} attempts" if attempt else ""
            hint = {
                "memory": f" even with tileScale={tile_scale:g}; use smaller batches or fewer covariates",
                "transient": "; Earth Engine is busy or unreachable, retry later or lower --max-workers",
                "fatal": "",
            }[kind]
            raise EarthEngineError(f"{what} failed{tries}: {msg}{hint}") from None
