"""What keeps a map run's memory bounded by the tile size, not the AOI: GDAL's block cache and glibc's heap.

:func:`bounded_memory` wraps every stage that reads or writes rasters (the serial run, each COG, each Dask tile job).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import rasterio

#: GDAL block cache (bytes: rasterio passes an integer ``GDAL_CACHEMAX`` on as bytes, not MB) while a map or COG is
#: written. GDAL's default (5 % of RAM) filled while overviews were built, growing with the raster (+0.5 GB for a
#: 6000 × 6000 map); blocks are written whole, so 64 MB costs no speed.
GDAL_CACHE_BYTES = 64 * 2**20
#: Allocations of at least this many bytes get their own pages from the kernel, returned as soon as they are freed
#: (glibc's ``M_MMAP_THRESHOLD``; see :func:`steady_malloc`).
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
_malloc_fixed = False


def steady_malloc() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process (once); True when it is set.

    By default glibc raises the threshold (up to 32 MB) each time a large block is freed, so a tile's megabyte-sized
    arrays come from the heap afterwards, and the heap keeps what fragmentation strands: peak RSS crept up with the
    number of tiles (a 16° map at 1 km: +120 MB over 49 tiles, flat from the first tile with a fixed threshold).
    A no-op off glibc, or when ``MALLOC_MMAP_THRESHOLD_`` is set in the environment (the user's choice wins).
    """
    global _malloc_fixed
    if _malloc_fixed:
        return True
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    _malloc_fixed = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _malloc_fixed


@contextmanager
def bounded_memory() -> Iterator[None]:
    """Run the block with GDAL's cache at :data:`GDAL_CACHE_BYTES` and glibc's threshold fixed (see above)."""
    steady_malloc()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        yield
