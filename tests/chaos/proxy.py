"""A small HTTP proxy in front of Prometheus that can make it slow or make it fail (fault injection).

`delay`: each answer is held back by a seeded random time (every n-th past the operator's query timeout);
`errors`: every request is answered 500 or 503 (alternately) without reaching Prometheus. Otherwise it
passes requests through. It counts what it did, for the fault table.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from modelledger.testing.processes import free_port


@dataclass
class Counts:
    passed: int = 0
    delayed: int = 0
    timed_out: int = 0  # delayed past the operator's query timeout
    failed: int = 0


class FaultyProxy:
    def __init__(self, upstream: str, seed: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.counts = Counts()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._delay: tuple[float, float, float, float] | None = None
        self._errors = False
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def slow(self, low: float, high: float, *, beyond: float = 0.0, by: float = 0.0) -> None:
        """Delay each answer uniformly in [low, high] s; a fraction `beyond` of them by `by` s instead."""
        with self._lock:
            self._delay = (low, high, beyond, by)

    def fail(self, on: bool = True) -> None:
        with self._lock:
            self._errors = on

    def clear(self) -> None:
        with self._lock:
            self._delay, self._errors = None, False

    @contextmanager
    def failing(self) -> Iterator[None]:
        self.fail(True)
        try:
            yield
        finally:
            self.fail(False)

    def _plan(self) -> tuple[int | None, float]:
        """(error status or None, delay) for the next request."""
        with self._lock:
            if self._errors:
                self.counts.failed += 1
                return (500 if self.counts.failed % 2 else 503), 0.0
            if self._delay is None:
                self.counts.passed += 1
                return None, 0.0
            low, high, beyond, by = self._delay
            self.counts.delayed += 1
            # Every (1/beyond)-th answer, counted, so even a short run has some past the timeout.
            if beyond and self.counts.delayed % max(1, round(1 / beyond)) == 1:
                self.counts.timed_out += 1
                return None, by
            return None, self._rng.uniform(low, high)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:  # quiet: the test prints what matters
                pass

            def _forward(self) -> None:
                error, delay = proxy._plan()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                time.sleep(delay)
                if error is not None:
                    self._answer(error, b'{"status":"error","errorType":"internal","error":"chaos"}')
                    return
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command)
                if self.headers.get("Content-Type"):
                    request.add_header("Content-Type", self.headers["Content-Type"])
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._answer(answer.status, answer.read())
                except urllib.error.HTTPError as failed:
                    self._answer(failed.code, failed.read())
                except OSError:
                    self._answer(502, b'{"status":"error","errorType":"unavailable","error":"upstream down"}')

            def _answer(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting (its timeout): nothing to answer

            do_GET = _forward
            do_POST = _forward

        return Handler
