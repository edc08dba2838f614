"""A real OpenAI-compatible embeddings server for tests, backed by a real (tiny) sentence-transformers model.

It listens on 127.0.0.1 on a free port, in a thread, and answers ``POST /v1/embeddings`` exactly like
the OpenAI API (``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], ...}``),
with the items in shuffled order so that clients must honour ``index``. Knobs inject the failures a
black-box teacher meets in the wild:

* ``fail_first=N, fail_status=429|503``: the first N requests fail (with ``Retry-After: retry_after``);
* ``api_key="k"``: requests without ``Authorization: Bearer k`` get 401;
* ``basic_auth=("user", "password")``: requests without that HTTP basic auth get 401 (a key in the URL);
* ``delay=0.2``: every answer is slowed down;
* ``model_name``: requests for another model get 404 (``model_not_found``).

Counters: ``requests`` (all POSTs), ``ok_requests``, ``batch_sizes`` (inputs per successful request).

    with serve_embeddings(model_dir, fail_first=2) as server:
        teacher = HttpTeacher(server.url, model=server.model_name, ...)
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np


class EmbeddingServer:
    def __init__(
        self,
        model: Any,
        *,
        model_name: str = "tiny-embedder",
        fail_first: int = 0,
        fail_status: int = 429,
        retry_after: float | None = 0,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        delay: float = 0.0,
        shuffle: bool = True,
    ):
        if isinstance(model, (str, Path)):
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(model), device="cpu")
        self.model = model
        self.model_name = model_name
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.api_key = api_key
        self.basic_auth = basic_auth
        self.delay = delay
        self.shuffle = shuffle
        self.requests = 0
        self.ok_requests = 0
        self.batch_sizes: list[int] = []
        self._count_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port it listens on (kept after stop, so tests can check that nothing answers there)."""
        assert self._port is not None, "server not started"
        return self._port

    @property
    def url(self) -> str:
        """The base URL a client is given (the OpenAI convention: ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def embed(self, texts: list[str]) -> np.ndarray:
        """What the server answers for ``texts`` (the model's own encode, no prompt added)."""
        with self._model_lock:
            return self.model.encode(texts, prompt="", convert_to_numpy=True, show_progress_bar=False)

    def start(self) -> EmbeddingServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _error(
                self, status: int, message: str, code: str, headers: dict[str, str] | None = None
            ) -> None:
                self._send(
                    status,
                    {"error": {"message": message, "type": "invalid_request_error", "code": code}},
                    headers,
                )

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with server._count_lock:
                    server.requests += 1
                    number = server.requests
                if server.delay:
                    time.sleep(server.delay)
                if self.path.split("?")[0].rstrip("/") != "/v1/embeddings":
                    return self._error(404, f"no route {self.path}", "not_found")
                if (
                    server.api_key is not None
                    and self.headers.get("Authorization") != f"Bearer {server.api_key}"
                ):
                    return self._error(401, "Incorrect API key provided.", "invalid_api_key")
                if server.basic_auth is not None:
                    expected = base64.b64encode(":".join(server.basic_auth).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {expected}":
                        return self._error(401, "Missing or wrong credentials.", "invalid_api_key")
                if number <= server.fail_first:
                    headers = {} if server.retry_after is None else {"Retry-After": str(server.retry_after)}
                    message = (
                        "Rate limit reached"
                        if server.fail_status == 429
                        else "Service temporarily unavailable"
                    )
                    return self._error(server.fail_status, message, "rate_limit_exceeded", headers)
                try:
                    request = json.loads(raw)
                except ValueError:
                    return self._error(
                        400, "We could not parse the JSON body of your request.", "invalid_json"
                    )
                if request.get("model") != server.model_name:
                    return self._error(
                        404, f"The model `{request.get('model')}` does not exist.", "model_not_found"
                    )
                inputs = request.get("input")
                if isinstance(inputs, str):
                    inputs = [inputs]
                if (
                    not isinstance(inputs, list)
                    or not inputs
                    or not all(isinstance(t, str) and t for t in inputs)
                ):
                    return self._error(
                        400,
                        "'input' must be a non-empty string or list of non-empty strings",
                        "invalid_input",
                    )
                vectors = server.embed(inputs)
                dims = request.get("dimensions")
                if dims:  # OpenAI's Matryoshka truncation, re-normalized
                    vectors = vectors[:, :dims]
                    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
                data = [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ]
                if server.shuffle:
                    random.Random(number).shuffle(data)
                with server._count_lock:
                    server.ok_requests += 1
                    server.batch_sizes.append(len(inputs))
                tokens = sum(len(t.split()) for t in inputs)
                self._send(200, {"object": "list", "data": data, "model": server.model_name,
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="embedding-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_embeddings(model: Any, **knobs: Any) -> Iterator[EmbeddingServer]:
    """Run an :class:`EmbeddingServer` for the duration of a ``with`` block."""
    server = EmbeddingServer(model, **knobs).start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (for 'unreachable server' tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
