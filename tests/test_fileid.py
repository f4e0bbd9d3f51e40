"""File identities: the sha256 of the bytes, cut to a length when asked."""

from __future__ import annotations

import hashlib

from geesoil.fileid import file_sha256


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    data = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    full = hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == full
    assert file_sha256(path, 16) == full[:16]
    path.write_bytes(data[:-1] + b"\x00")
    assert file_sha256(path) != full
