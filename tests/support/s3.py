"""An HTTP proxy in front of the tests' S3 server (SeaweedFS, tests.support.seaweed) that can
make it fail, and the test credentials.

``S3FaultProxy`` forwards HTTP to the server and, once told, answers write requests
(PUT, POST) with ``500 InternalError`` as a failing S3 endpoint does in the middle of an
upload, or answers conditional writes (``If-None-Match``) with ``409
ConditionalRequestConflict`` as S3 does when two such writes to one key race, either
instead of the write or after letting it through. Every wait is bounded; nothing listens
beyond 127.0.0.1.

Example::

    with seaweed_s3(folder) as s3, S3FaultProxy(s3.port) as proxy:
        proxy.fail_writes_after = 3       # the 4th write and later get 500
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
CREDENTIALS = {"aws_access_key_id": "testing-key-id", "aws_secret_access_key": "testing-secret-key"}

_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
_CONFLICT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict</Code>'
    b"<Message>A conflicting operation occurred. If using PutObject you can retry the "
    b"request.</Message></Error>"
)


class S3FaultProxy:
    """An HTTP forwarder to the S3 server that fails writes on demand (500 InternalError)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.fail_writes_after: int | None = None  # None: never fail
        self.writes = 0  # PUT/POST requests seen
        self.failed = 0  # of which answered 500
        self.conflicts_to_answer = 0  # conditional writes still to answer 409
        self.conflict_after_write = False  # True: the write reaches the server, the answer is 409
        self.conflicts = 0  # 409s answered
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _error(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                body = self._body()
                if self.command in ("PUT", "POST") and proxy._should_fail():
                    self._error(500, _ERROR)
                    return
                if (
                    self.command in ("PUT", "POST")
                    and self.headers.get("If-None-Match")
                    and proxy._should_conflict()
                ):
                    if proxy.conflict_after_write:
                        self._upstream(body)  # it lands; the answer says otherwise
                    self._error(409, _CONFLICT)
                    return
                status, headers, data = self._upstream(body)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                # HEAD answers carry the object's length, not the (empty) body's.
                length = (
                    dict((k.lower(), v) for k, v in headers).get("content-length")
                    if self.command == "HEAD"
                    else None
                )
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _upstream(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
                upstream = http.client.HTTPConnection(HOST, proxy.upstream_port, timeout=30)
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("transfer-encoding", "expect", "connection")
                    }
                    if body is not None:
                        headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    return answer.status, answer.getheaders(), answer.read()
                finally:
                    upstream.close()

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return (
                    self.rfile.read(length) if length else (b"" if self.command in ("PUT", "POST") else None)
                )

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _should_fail(self) -> bool:
        with self._lock:
            self.writes += 1
            if self.fail_writes_after is not None and self.writes > self.fail_writes_after:
                self.failed += 1
                return True
            return False

    def _should_conflict(self) -> bool:
        with self._lock:
            if self.conflicts_to_answer <= 0:
                return False
            self.conflicts_to_answer -= 1
            self.conflicts += 1
            return True

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
