"""Teachers: whatever produces the target embeddings, behind one small interface.

A teacher is either a sentence-transformers model (a Hub id or a local folder) or a *black box*: an
HTTP embeddings API in the OpenAI shape (``POST {base_url}/embeddings`` with ``{"model", "input"}``),
which is how most large embedding models are served (OpenAI, vLLM, TEI, Infinity, Ollama, LiteLLM).
Distillation only needs the teacher's vectors, so both look the same to the rest of leaf-hub:
:class:`Teacher` says how to encode texts (applying the query/document prompt itself) and describes the
vector space (dimension, unit length or not) and the teacher's identity (``fingerprint``), which the
teacher cache records so that embeddings from different teachers are never mixed.

Environment for API teachers: ``LEAF_HUB_TEACHER_URL`` (base URL, e.g. ``http://localhost:8000/v1``),
``LEAF_HUB_TEACHER_MODEL`` and ``LEAF_HUB_TEACHER_API_KEY`` (falls back to ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from leaf_hub.errors import LeafHubError

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

Kind = Literal["query", "document"]
ENV_URL = "LEAF_HUB_TEACHER_URL"
ENV_MODEL = "LEAF_HUB_TEACHER_MODEL"
ENV_KEY = "LEAF_HUB_TEACHER_API_KEY"
# Texts embedded once when an API teacher is created, to learn its dimension and whether it normalizes.
PROBE_TEXTS = ("What is a leaf model?", "A small model whose embeddings live in its teacher's vector space.")


@runtime_checkable
class Teacher(Protocol):
    """What distillation needs from a teacher."""

    name: str  # Hub id, folder, or API model name
    fingerprint: str  # revision / weights hash, or "api:<base_url>:<model>"
    dimension: int
    normalized: bool  # whether every embedding has unit length
    prompts: dict[str, str]  # {"query": ..., "document": ...}; "" when none
    max_seq_length: int | None

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        """float32 array (len(texts), dimension); the prompt of ``kind`` is applied here."""
        ...

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Approximate input length of each text, for length-sorted batching."""
        ...


def _check_kind(kind: str) -> None:
    if kind not in ("query", "document"):
        raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")


class SentenceTransformerTeacher:
    """A loaded :class:`~sentence_transformers.SentenceTransformer` as a teacher."""

    def __init__(
        self,
        model: Any,
        batch_size: int = 64,
        prompts: dict[str, str | None] | None = None,
        name: str | None = None,
    ):
        from leaf_hub.models import (
            document_prompt,
            is_normalized,
            model_id,
            query_prompt,
            weights_fingerprint,
        )

        if batch_size <= 0:
            raise LeafHubError(f"teacher batch size {batch_size} must be at least 1")
        self.model = model
        self.batch_size = batch_size
        self.name = name or model_id(model)
        self.fingerprint = weights_fingerprint(model)
        self.dimension = int(model.get_embedding_dimension())
        self.normalized = bool(is_normalized(model))
        self.prompts = {"query": query_prompt(model), "document": document_prompt(model)}
        self.prompts.update({k: v for k, v in (prompts or {}).items() if v is not None})
        self.max_seq_length = model.max_seq_length

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        _check_kind(kind)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # An explicit prompt (even "") keeps the model's default_prompt_name from sneaking in.
        embeddings = self.model.encode(
            list(texts),
            prompt=self.prompts.get(kind, ""),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(embeddings, dtype=np.float32)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Token counts including special tokens, capped at the model's max sequence length."""
        tokenizer = self.model.tokenizer
        cap = self.max_seq_length or 10**9
        lengths: list[int] = []
        for start in range(0, len(texts), 4096):
            chunk = list(texts[start : start + 4096])
            ids = tokenizer(chunk, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            lengths.extend(min(len(x), cap) for x in ids)
        return lengths

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerTeacher({self.name!r}, dim={self.dimension}, normalized={self.normalized})"
        )


class OnnxRuntimeTeacher(SentenceTransformerTeacher):
    """A sentence-transformers teacher run through ONNX Runtime (measured 1.4-1.5x faster on CPU).

    The model is exported once (whole graph: transformer, pooling, normalization) into leaf-hub's ONNX
    cache. It is used only when its embeddings match PyTorch's on probe texts (cosine >= ``MIN_COSINE``);
    the fingerprint stays the PyTorch model's, so either backend fills and reuses the same teacher cache.
    """

    MIN_COSINE = 0.9999

    def __init__(self, model: Any, source: str, batch_size: int = 64, prompts=None, name: str | None = None):
        from leaf_hub.export.onnx import ensure_onnx
        from leaf_hub.export.onnx_encoder import OnnxEncoder

        super().__init__(model, batch_size=batch_size, prompts=prompts, name=name)
        folder = ensure_onnx(source, quantized=False, model=model)
        self.encoder = OnnxEncoder(folder, max_seq_length=self.max_seq_length)
        probes = [
            "What is the capital of France?",
            "Distillation trains a small model to reproduce the outputs of a large one. " * 6,
            "a",
        ]
        for kind in ("query", "document"):
            reference = super().encode(probes, kind)
            onnx = self.encode(probes, kind)
            cos = (reference * onnx).sum(1) / (
                np.linalg.norm(reference, axis=1) * np.linalg.norm(onnx, axis=1) + 1e-12
            )
            self.parity = float(cos.min())
            if self.parity < self.MIN_COSINE:
                raise LeafHubError(
                    f"the ONNX export of {self.name!r} disagrees with PyTorch (cosine {self.parity:.6f} < "
                    f"{self.MIN_COSINE}); use --teacher-backend torch"
                )

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        _check_kind(kind)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = self.encoder.encode(list(texts), prompt=self.prompts.get(kind, ""), batch_size=self.batch_size)
        return np.asarray(out, dtype=np.float32)


class HttpTeacher:
    """An OpenAI-compatible embeddings API as a teacher.

    Requests are batched (``batch_size`` texts per request, ``concurrency`` requests in flight), and
    retried with exponential backoff and jitter on 429, 5xx and connection errors, honouring the
    server's ``Retry-After``. Other 4xx answers fail at once with a :class:`LeafHubError` that says
    what to change. The dimension and whether vectors are unit length are learned from one probe request
    at construction, which also fails fast (two retries) when nothing listens at the URL.
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
        import httpx

        base_url = (base_url or os.environ.get(ENV_URL, "")).strip()
        if not base_url:
            raise LeafHubError(
                f"no embeddings API URL given; pass it as the teacher (http://HOST:PORT/v1) or set {ENV_URL}"
            )
        if not base_url.startswith(("http://", "https://")):
            raise LeafHubError(f"embeddings API URL {base_url!r} must start with http:// or https://")
        base_url = base_url.rstrip("/")
        if base_url.endswith("/embeddings"):  # the full endpoint was given
            base_url = base_url[: -len("/embeddings")]
        model = (model or os.environ.get(ENV_MODEL, "")).strip()
        if not model:
            raise LeafHubError(
                f"no model name for the embeddings API at {base_url}; pass it (e.g. --teacher-model "
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
        self.base_url = base_url
        self.url = f"{base_url}/embeddings"
        self.name = model
        self.fingerprint = f"api:{base_url}:{model}"
        self.prompts = {"query": query_prompt or "", "document": document_prompt or ""}
        self.max_seq_length: int | None = None
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.requested_dimensions = dimensions
        self.timeout = timeout
        api_key = api_key or os.environ.get(ENV_KEY) or os.environ.get("OPENAI_API_KEY") or None
        self._has_key = bool(api_key)
        headers = {"Content-Type": "application/json", "User-Agent": "leaf-hub"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.Client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers)
        self._lock = threading.Lock()
        self.requests_sent = 0  # successful and failed, for logs and tests

        try:
            probe = self._embed_batch(list(PROBE_TEXTS), connect_retries=min(2, max_retries))
        except BaseException:
            self._client.close()
            raise
        self.dimension = int(probe.shape[1])
        norms = np.linalg.norm(probe.astype(np.float64), axis=1)
        self.normalized = bool(np.all(np.abs(norms - 1.0) < 1e-3))
        logger.info(
            "API teacher %s at %s: %d-d, %s",
            model,
            base_url,
            self.dimension,
            "normalized" if self.normalized else "not normalized",
        )

    # -- public ------------------------------------------------------------------------------------

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        _check_kind(kind)
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
        out = np.concatenate(parts, axis=0)
        if out.shape[1] != self.dimension:
            raise LeafHubError(
                f"the embeddings API at {self.url} changed its dimension from {self.dimension} to {out.shape[1]}; "
                "check that the server still serves the same model"
            )
        return out

    def token_lengths(self, texts: list[str]) -> list[int]:
        """An estimate (characters / 4): the API's tokenizer is not available here."""
        return [max(1, len(t) // 4) for t in texts]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpTeacher({self.url!r}, model={self.name!r}, dim={self.dimension})"

    # -- requests ----------------------------------------------------------------------------------

    def _embed_batch(self, inputs: list[str], connect_retries: int | None = None) -> np.ndarray:
        body: dict[str, Any] = {"model": self.name, "input": inputs}
        if self.requested_dimensions:
            body["dimensions"] = self.requested_dimensions
        payload = self._post(body, connect_retries)
        return self._parse(payload, len(inputs))

    def _post(self, body: dict, connect_retries: int | None) -> Any:
        import httpx

        attempt = 0
        last = ""
        while True:
            with self._lock:
                self.requests_sent += 1
            retry_after: float | None = None
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TransportError as exc:  # connection refused, DNS, timeouts, broken connections
                last = f"{type(exc).__name__}: {exc}".rstrip(": ")
                limit = self.max_retries if connect_retries is None else connect_retries
                if attempt >= limit:
                    if isinstance(exc, httpx.TimeoutException):
                        raise LeafHubError(
                            f"the embeddings API at {self.url} did not answer within {self.timeout:g}s, "
                            f"{attempt + 1} tries ({last}); raise the timeout, lower the batch size, or check "
                            "the server"
                        ) from None
                    raise LeafHubError(
                        f"the embeddings API at {self.url} is unreachable after {attempt + 1} tries ({last}); check "
                        "that the server is running and the URL (http://HOST:PORT/v1) is right"
                    ) from None
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise LeafHubError(
                            f"the embeddings API at {self.url} answered with something that is not JSON "
                            f"({response.text[:120]!r}); check the URL points at an OpenAI-compatible /v1 endpoint"
                        ) from None
                message = _error_message(response)
                last = f"HTTP {response.status_code}" + (f": {message}" if message else "")
                if response.status_code != 429 and response.status_code < 500:
                    raise self._client_error(response.status_code, message)
                if attempt >= self.max_retries:
                    raise LeafHubError(
                        f"the embeddings API at {self.url} still fails after {attempt + 1} tries (last: {last}); "
                        "wait and rerun (finished work is kept), lower the request rate with a smaller batch size, "
                        "or raise the retry limit"
                    )
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            delay = (
                self.backoff * (2**attempt) * (0.5 + random.random())
            )  # jitter spreads out parallel clients
            delay = min(delay, self.max_backoff)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 600.0))
            attempt += 1
            logger.warning("embeddings API %s: %s; retry %d in %.1fs", self.url, last, attempt, delay)
            time.sleep(delay)

    def _client_error(self, status: int, message: str) -> LeafHubError:
        detail = f" ({message})" if message else ""
        if status in (401, 403):
            how = (
                f"no API key was given: set it with --teacher-api-key, {ENV_KEY} or OPENAI_API_KEY"
                if not self._has_key
                else f"check the key given with --teacher-api-key, {ENV_KEY} or OPENAI_API_KEY"
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


def _error_message(response: Any) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(payload, dict):
        err = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err
        if err:
            return str(err)[:200]
    return str(payload)[:200]


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def load_teacher(
    spec: str,
    *,
    device: str | None = None,
    api_key: str | None = None,
    api_model: str | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    batch_size: int = 64,
    backend: str = "torch",
    **http_options: Any,
) -> Teacher:
    """A teacher from a Hub id, a local folder, or an ``http(s)://`` embeddings API base URL.

    ``spec`` ``"api"`` (or empty) means the URL in ``LEAF_HUB_TEACHER_URL``. ``query_prompt`` /
    ``document_prompt`` override the model's prompts when given (an API has none of its own).
    ``http_options`` go to :class:`HttpTeacher` (``max_retries``, ``timeout``, ``dimensions``,
    ``concurrency``, ``backoff``, ``max_backoff``).
    """
    spec = (spec or "").strip()
    if spec in ("", "api"):
        spec = os.environ.get(ENV_URL, "").strip()
        if not spec:
            raise LeafHubError(
                f"no teacher given; pass a model id, a model folder or an API URL, or set {ENV_URL}"
            )
    if spec.startswith(("http://", "https://")):
        return HttpTeacher(
            spec,
            model=api_model,
            api_key=api_key,
            batch_size=batch_size,
            query_prompt=query_prompt or "",
            document_prompt=document_prompt or "",
            **http_options,
        )
    if http_options:
        raise LeafHubError(
            f"options {', '.join(sorted(http_options))} apply to API teachers only, not to {spec!r}"
        )
    from leaf_hub.models import load_model

    if backend not in ("torch", "onnx"):
        raise LeafHubError(f"teacher backend {backend!r} is not one of torch, onnx")
    model = load_model(spec, device=device if backend == "torch" else "cpu")
    overrides = {"query": query_prompt, "document": document_prompt}
    if backend == "onnx":
        return OnnxRuntimeTeacher(model, spec, batch_size=batch_size, prompts=overrides, name=spec)
    return SentenceTransformerTeacher(model, batch_size=batch_size, prompts=overrides, name=spec)
