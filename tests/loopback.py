"""The HTTP plumbing shared by the fake servers: a threaded server on 127.0.0.1, an ephemeral port, clean stop."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Self


class LoopbackHandler(BaseHTTPRequestHandler):
    """Request handler base of the fakes: ``reply`` writes one complete response."""

    def reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        """Send ``status``, ``headers`` (any Content-Length replaced by the payload's) and ``payload``."""
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class LoopbackServer:
    """Serves :meth:`handler_class` (whose handlers find this object as ``self.fake``) on 127.0.0.1."""

    thread_name: ClassVar[str] = "fake-server"
    _httpd: ThreadingHTTPServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        handler = type("Handler", (self.handler_class(),), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the fake server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
