"""An OpenAI-compatible embeddings API as the teacher: ``POST {base_url}/embeddings`` with ``{"model", "input"}``.

That is how most large embedding models are served (OpenAI, vLLM, TEI, Infinity, Ollama, LiteLLM).
Environment: ``LEAF_HUB_TEACHER_URL`` (base URL, e.g. ``http://localhost:8000/v1``),
``LEAF_HUB_TEACHER_MODEL`` and ``LEAF_HUB_TEACHER_API_KEY`` (falls back to ``OPENAI_API_KEY``). A key may
also sit in the URL (``http://user:KEY@host/v1``): it is sent, and shown nowhere (messages, logs, the
teacher's ``fingerprint`` and hence the cache manifest, run records and cards see the redacted URL).
"""

from __future__ import annotations

import base64
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from leaf_hub.data.texts import Kind
from leaf_hub.errors import LeafHubError
from leaf_hub.http import HttpStatusError, JsonClient, RetryPolicy, redact_url
from leaf_hub.teachers.base import check_kind

logger = logging.getLogger(__name__)

ENV_URL = "LEAF_HUB_TEACHER_URL"
ENV_MODEL = "LEAF_HUB_TEACHER_MODEL"
ENV_KEY = "LEAF_HUB_TEACHER_API_KEY"
# Texts embedded once when an API teacher is created, to learn its dimension and whether it normalizes.
PROBE_TEXTS = ("What is a leaf model?", "A small model whose embeddings live in its teacher's vector space.")
KEY_HELP = f"--api-key, {ENV_KEY} or OPENAI_API_KEY"


class HttpTeacher:
    """An OpenAI-compatible embeddings API as a teacher.

    Requests are batched (``batch_size`` texts per request, ``concurrency`` requests in flight) and retried
    by :class:`~leaf_hub.http.JsonClient` (backoff with jitter on 429, 5xx and connection errors,
    honouring ``Retry-After``). Other 4xx answers fail at once with a :class:`LeafHubError` that says what
    to change. The dimension and whether vectors are unit length are learned from one probe request at
    construction, which also fails fast (two retries) when nothing listens at the URL.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        batch_size: int = 64,
        max_retries: int = 6,
        timeout: float = 60,
        query_prompt: str = "",
        document_prompt: str = "",
        dimensions: int | None = None,
        *,
        concurrency: int = 1,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ):
        base_url = (base_url or os.environ.get(ENV_URL, "")).strip()
        if not base_url:
            raise LeafHubError(
                f"no embeddings API URL given; pass it as the teacher (http://HOST:PORT/v1) or set {ENV_URL}"
            )
        if not base_url.startswith(("http://", "https://")):
            raise LeafHubError(
                f"embeddings API URL {redact_url(base_url)!r} must start with http:// or https://"
            )
        base_url, _, query = base_url.partition("?")  # a query (e.g. ?api_key=...) goes after the endpoint
        base_url = base_url.rstrip("/")
        if base_url.endswith("/embeddings"):  # the full endpoint was given
            base_url = base_url[: -len("/embeddings")]
        query = f"?{query}" if query else ""
        shown = redact_url(base_url + query)
        model = (model or os.environ.get(ENV_MODEL, "")).strip()
        if not model:
            raise LeafHubError(
                f"no model name for the embeddings API at {shown}; pass it (e.g. --api-model "
                f"text-embedding-3-small) or set {ENV_MODEL}"
            )
        for name, value, low in (
            ("batch size", batch_size, 1),
            ("concurrency", concurrency, 1),
            ("max retries", max_retries, 0),
        ):
            if value < low:
                raise LeafHubError(f"API teacher {name} {value} must be at least {low}")
        if dimensions is not None and dimensions <= 0:
            raise LeafHubError(f"dimensions={dimensions} must be a positive number")
        self.base_url = shown
        self.name = model
        self.fingerprint = f"api:{shown}:{model}"
        self.prompts = {"query": query_prompt or "", "document": document_prompt or ""}
        self.max_seq_length: int | None = None
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.requested_dimensions = dimensions
        api_key = api_key or os.environ.get(ENV_KEY) or os.environ.get("OPENAI_API_KEY") or None
        self._has_key = bool(api_key)
        self._http = JsonClient(
            f"{base_url}/embeddings{query}",
            api_key=api_key,
            timeout=timeout,
            retry=RetryPolicy(max_retries=max_retries, backoff=backoff, max_backoff=max_backoff),
            what="the embeddings API",
        )
        self.url = self._http.shown_url
        try:
            probe = self._embed_batch(list(PROBE_TEXTS), connect_retries=min(2, max_retries))
        except BaseException:
            self._http.close()
            raise
        self.dimension = int(probe.shape[1])
        norms = np.linalg.norm(probe.astype(np.float64), axis=1)
        self.normalized = bool(np.all(np.abs(norms - 1.0) < 1e-3))
        logger.info(
            "API teacher %s at %s: %d-d, %s",
            model,
            shown,
            self.dimension,
            "normalized" if self.normalized else "not normalized",
        )

    @property
    def requests_sent(self) -> int:
        """Requests sent so far, successful and failed (for logs and tests)."""
        return self._http.stats.requests

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        check_kind(kind)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompt = self.prompts.get(kind, "")
        inputs = [prompt + t for t in texts]
        batches = [inputs[i : i + self.batch_size] for i in range(0, len(inputs), self.batch_size)]
        if self.concurrency == 1 or len(batches) == 1:
            parts = [self._embed_batch(b) for b in batches]
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="leaf-hub-api") as pool:
                parts = list(pool.map(self._embed_batch, batches))
        for part in parts:  # checked per response, before anything is put together
            if part.shape[1] != self.dimension:
                raise LeafHubError(
                    f"the embeddings API at {self.url} changed its dimension from {self.dimension} to "
                    f"{part.shape[1]}; check that the server still serves the same model"
                )
        return np.concatenate(parts, axis=0)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """An estimate (characters / 4): the API's tokenizer is not available here."""
        return [max(1, len(t) // 4) for t in texts]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpTeacher({self.url!r}, model={self.name!r}, dim={self.dimension})"

    def _embed_batch(self, inputs: list[str], connect_retries: int | None = None) -> np.ndarray:
        body: dict[str, Any] = {"model": self.name, "input": inputs}
        if self.requested_dimensions:
            body["dimensions"] = self.requested_dimensions
        try:
            payload = self._http.post(body, connect_retries=connect_retries)
        except HttpStatusError as exc:
            raise self._client_error(exc.status, exc.message) from None
        return self._parse(payload, len(inputs))

    def _client_error(self, status: int, message: str) -> LeafHubError:
        detail = f" ({message})" if message else ""
        if status in (401, 403):
            how = (
                f"no API key was given: set it with {KEY_HELP}"
                if not self._has_key
                else f"check the key given with {KEY_HELP}"
            )
            return LeafHubError(
                f"the embeddings API at {self.url} refused access: HTTP {status}{detail}; {how}"
            )
        if status == 404:
            return LeafHubError(
                f"the embeddings API at {self.url} answered HTTP 404{detail}; check the base URL (it usually ends "
                f"in /v1) and the model name {self.name!r}"
            )
        return LeafHubError(
            f"the embeddings API at {self.url} rejected the request: HTTP {status}{detail}; check the model name "
            f"{self.name!r}, the dimensions option and that the texts fit the model's input limit"
        )

    def _parse(self, payload: Any, n: int) -> np.ndarray:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != n:
            got = f"{len(data)} embeddings" if isinstance(data, list) else "no 'data' list"
            raise LeafHubError(
                f"the embeddings API at {self.url} answered {got} for {n} inputs; it does not speak the OpenAI "
                "embeddings format ({'data': [{'index', 'embedding'}]})"
            )
        rows: list[np.ndarray | None] = [None] * n
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < n or rows[index] is not None or vector is None:
                raise LeafHubError(
                    f"the embeddings API at {self.url} answered a malformed or duplicate item {position}"
                )
            if isinstance(vector, str):  # encoding_format=base64
                rows[index] = np.frombuffer(base64.b64decode(vector), dtype=np.float32)
            else:
                rows[index] = np.asarray(vector, dtype=np.float32)
        if len({r.shape for r in rows}) != 1:  # type: ignore[union-attr]
            raise LeafHubError(f"the embeddings API at {self.url} answered vectors of different lengths")
        return np.stack(rows).astype(np.float32, copy=False)  # type: ignore[arg-type]
