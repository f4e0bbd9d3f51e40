"""A fake Cloud Storage JSON API on 127.0.0.1 for offline tests, and the ``fake_gcs`` fixture that starts it.

It serves what ``google-cloud-storage`` sends for uploads and listings: multipart media uploads
(``uploadType=multipart``), resumable uploads (``uploadType=resumable`` then ``PUT`` chunks with ``Content-Range``),
object metadata (``GET /storage/v1/b/B/o/NAME``), listings with ``prefix`` and paging, and media downloads
(``alt=media``). Objects live in memory (``objects[(bucket, name)] = bytes``); every request is recorded in
``calls`` so tests can count uploads. Buckets exist when named in ``buckets`` (others answer 404).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import google_crc32c
import pytest
from loopback import LoopbackHandler, LoopbackServer


@dataclass
class GcsCall:
    method: str
    path: str
    query: dict[str, str]
    status: int


def crc32c_b64(data: bytes) -> str:
    """The object's CRC32C as Cloud Storage reports it: base64 of the big-endian 4 bytes."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class FakeGcs(LoopbackServer):
    """The fake server: ``start()``, ``url``, ``objects``, ``calls``, ``client()``, ``stop()``."""

    thread_name = "fake-gcs"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self, buckets: tuple[str, ...] = ("test-bucket",), page_size: int = 1000) -> None:
        self.buckets = set(buckets)
        self.locations: dict[str, str] = {}  # bucket → location reported in its metadata (default US)
        self.page_size = page_size
        self.objects: dict[tuple[str, str], bytes] = {}
        self.content_types: dict[tuple[str, str], str] = {}
        self.calls: list[GcsCall] = []
        self._generation = 0
        self._sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._fail_uploads: list[int] = []  # statuses for the next upload requests

    def fail_uploads(self, status: int = 503, times: int = 1, after: int = 0) -> None:
        """Answer ``status`` to ``times`` upload requests, after letting ``after`` more succeed."""
        with self._lock:
            self._fail_uploads.extend([0] * after + [status] * times)

    def client(self) -> Any:
        """A real ``google.cloud.storage.Client`` talking to this server with anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )

    def uploads(self) -> list[GcsCall]:
        """Requests that started or carried an upload."""
        with self._lock:
            return [c for c in self.calls if c.path.startswith("/upload/") and c.method == "POST"]

    # -- object resources
    def _resource(self, bucket: str, name: str) -> dict[str, Any]:
        data = self.objects[(bucket, name)]
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/1",
            "bucket": bucket,
            "name": name,
            "size": str(len(data)),
            "crc32c": crc32c_b64(data),
            "md5Hash": md5_b64(data),
            "generation": "1",
            "metageneration": "1",
            "contentType": self.content_types.get((bucket, name), "application/octet-stream"),
            "selfLink": f"{self.url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
        }

    def _store(self, bucket: str, name: str, data: bytes, meta: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # Cloud Storage rejects an upload whose declared checksum does not match the bytes.
        if "crc32c" in meta and meta["crc32c"] != crc32c_b64(data):
            return 400, {"error": {"code": 400, "message": "Provided CRC32C does not match"}}
        if "md5Hash" in meta and meta["md5Hash"] != md5_b64(data):
            return 400, {"error": {"code": 400, "message": "Provided MD5 hash does not match"}}
        with self._lock:
            self.objects[(bucket, name)] = data
            if meta.get("contentType"):
                self.content_types[(bucket, name)] = meta["contentType"]
        return 200, self._resource(bucket, name)

    # -- request handling
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = [unquote(p) for p in path.split("/")]
        # /upload/storage/v1/b/BUCKET/o
        if path.startswith("/upload/storage/v1/b/"):
            with self._lock:
                fail = self._fail_uploads.pop(0) if self._fail_uploads else 0
            if fail:
                return _err(fail, "Backend Error (injected)")
            bucket = parts[5]
            if bucket not in self.buckets:
                return _err(404, f"bucket {bucket} not found")
            kind = query.get("uploadType")
            if method == "POST" and kind == "multipart":
                meta, data = _split_multipart(headers.get("Content-Type", ""), body)
                status, doc = self._store(bucket, meta.get("name") or query.get("name", ""), data, meta)
                return _json(status, doc)
            if method == "POST" and kind == "resumable":
                meta = json.loads(body) if body else {}
                sid = uuid.uuid4().hex
                with self._lock:
                    self._sessions[sid] = {"bucket": bucket, "meta": meta, "data": b""}
                loc = f"{self.url}/upload/storage/v1/b/{quote(bucket)}/o?uploadType=resumable&upload_id={sid}"
                return 200, {"Location": loc, "Content-Length": "0"}, b""
            if method == "PUT" and kind == "resumable":
                return self._resumable_chunk(query.get("upload_id", ""), headers, body)
            return _err(400, f"fake GCS: unsupported upload {method} {kind}")
        if path.startswith("/download/storage/v1/b/") and method == "GET":
            key = (parts[5], "/".join(parts[7:]))
            if key not in self.objects:
                return _err(404, f"No such object: {key[0]}/{key[1]}")
            return 200, {"Content-Type": "application/octet-stream"}, self.objects[key]
        if path.startswith("/storage/v1/b/") and method == "GET":
            bucket = parts[4]
            if bucket not in self.buckets:
                return _err(404, f"The specified bucket does not exist: {bucket}")
            if len(parts) == 5:  # bucket metadata
                doc = {"kind": "storage#bucket", "name": bucket, "id": bucket}
                return _json(200, doc | {"location": self.locations.get(bucket, "US")})
            if len(parts) == 6:  # listing
                return self._list(bucket, query)
            name = "/".join(parts[6:])
            if (bucket, name) not in self.objects:
                return _err(404, f"No such object: {bucket}/{name}")
            if query.get("alt") == "media":
                return 200, {"Content-Type": "application/octet-stream"}, self.objects[(bucket, name)]
            return _json(200, self._resource(bucket, name))
        return _err(404, f"fake GCS does not serve {method} {path}")

    def _list(self, bucket: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        prefix = query.get("prefix", "")
        with self._lock:
            names = sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix))
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("maxResults") or self.page_size), self.page_size)
        doc: dict[str, Any] = {
            "kind": "storage#objects",
            "items": [self._resource(bucket, n) for n in names[start : start + size]],
        }
        if start + size < len(names):
            doc["nextPageToken"] = str(start + size)
        return _json(200, doc)

    def _resumable_chunk(self, sid: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            return _err(404, "unknown upload session")
        crange = headers.get("Content-Range", "")  # "bytes 0-99/*", "bytes 0-99/100" or "bytes */100"
        spec, _, total = crange.removeprefix("bytes ").partition("/")
        if spec != "*":
            first = int(spec.split("-")[0])
            if first != len(session["data"]):
                return _err(400, f"chunk starts at {first}, expected {len(session['data'])}")
            session["data"] += body
        if total != "*" and len(session["data"]) == int(total):
            with self._lock:
                self._sessions.pop(sid, None)
            meta = session["meta"]
            status, doc = self._store(session["bucket"], meta.get("name", ""), session["data"], meta)
            return _json(status, doc)
        n = len(session["data"])
        return 308, ({"Range": f"bytes=0-{n - 1}"} if n else {}) | {"Content-Length": "0"}, b""


def _split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a ``multipart/related`` upload."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = list(msg.iter_parts())
    meta = json.loads(parts[0].get_payload(decode=True))
    return meta, parts[1].get_payload(decode=True)


def _json(status: int, doc: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


def _err(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"code": status, "message": message, "errors": [{"message": message}]}})


class _Handler(LoopbackHandler):
    fake: FakeGcs
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            status, headers, payload = self.fake.handle(method, url.path, query, self.headers, body)
        except Exception as exc:  # a bug in the fake: answer 500 so the client side sees something
            status, headers, payload = _err(500, f"fake GCS crashed: {type(exc).__name__}: {exc}")
        with self.fake._lock:
            self.fake.calls.append(GcsCall(method, url.path, query, status))
        self.reply(status, headers, payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")


@pytest.fixture
def fake_gcs():
    """A running fake Cloud Storage server with one bucket, ``test-bucket``."""
    server = FakeGcs().start()
    try:
        yield server
    finally:
        server.stop()
