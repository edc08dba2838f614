"""The one HTTP layer for the OpenAI-style APIs leaf-hub talks to (an embeddings teacher, a chat model).

:class:`JsonClient` posts JSON and retries what is worth retrying: connection errors, timeouts, 429 and
5xx, with exponential backoff and jitter, honouring the server's ``Retry-After``. Any other answer comes
back as :class:`HttpStatusError` at once, for the caller to explain in its own terms. Secrets never leave
this module in a message: URLs are shown by :func:`redact_url`, which drops credentials written into them
(``http://user:KEY@host/v1``) and blanks query values (``?api_key=...``).

(huggingface_hub's ``http_backoff`` is not used: it goes through the Hub session, which refuses every
request in offline mode, while these APIs are not the Hub.)
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def redact_url(url: str) -> str:
    """``url`` without what may be secret: user:password before the host and the values of the query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username or parts.password:
        netloc = f"***@{netloc}"
    query = "&".join(f"{item.split('=', 1)[0]}=***" for item in parts.query.split("&") if item)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``(url without user:password, (user, password) or None)``: credentials go in a header, not the URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    from urllib.parse import unquote

    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


class HttpStatusError(LeafHubError):
    """The server answered with a status that retrying will not change (a 4xx other than 408/409/425/429)."""

    def __init__(self, status: int, message: str, url: str):
        self.status = status
        self.message = message
        self.url = url
        super().__init__(f"{url} answered HTTP {status}" + (f" ({message})" if message else ""))


class RetriesExhausted(LeafHubError):
    """Every try failed (connection errors, timeouts, 429 or 5xx); ``attempts`` tries, the ``last`` failure."""

    def __init__(self, message: str, attempts: int, last: str):
        self.attempts = attempts
        self.last = last
        super().__init__(message)


@dataclass
class RetryPolicy:
    """How long to keep trying: ``max_retries`` retries after the first try, waiting ``backoff * 2**n``
    seconds (jittered, at most ``max_backoff``), or what ``Retry-After`` asks (at most ``max_retry_after``)."""

    max_retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wait = min(self.backoff * (2**attempt) * (0.5 + random.random()), self.max_backoff)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


@dataclass
class RequestStats:
    requests: int = 0  # sent, successful or not
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            self.retries += int(retry)


class JsonClient:
    """POST JSON to one endpoint with retries; thread-safe (requests may run from a thread pool).

    ``url`` may carry ``user:password@``: they are sent as basic auth and never shown. ``api_key`` is sent
    as a bearer token. ``min_interval`` spaces requests out (a rate limit), ``what`` names the endpoint in
    messages ("the embeddings API").
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        min_interval: float = 0.0,
        what: str = "the API",
    ):
        import httpx

        clean, credentials = split_credentials(url)
        self.url = clean
        self.shown_url = redact_url(url)
        self.what = what
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.min_interval = min_interval
        self.stats = RequestStats()
        self._next_start = 0.0
        self._throttle_lock = threading.Lock()
        headers = {"Content-Type": "application/json", "User-Agent": "leaf-hub"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers=headers,
            auth=httpx.BasicAuth(*credentials) if credentials else None,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _throttle(self) -> None:
        if not self.min_interval:
            return
        with self._throttle_lock:
            wait = self._next_start - time.monotonic()
            self._next_start = max(time.monotonic(), self._next_start) + self.min_interval
        if wait > 0:
            time.sleep(wait)

    def post(self, body: dict[str, Any], *, connect_retries: int | None = None) -> Any:
        """The decoded JSON answer to ``body``.

        Retries connection errors (at most ``connect_retries`` times when given: a probe should fail fast
        when nothing listens), timeouts, 429 and 5xx. Raises :class:`HttpStatusError` for other statuses
        and :class:`LeafHubError` when the retries run out or the answer is not JSON.
        """
        import httpx

        attempt = 0
        while True:
            self._throttle()
            self.stats.count(retry=attempt > 0)
            retry_after: float | None = None
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TransportError as exc:  # connection refused, DNS, timeouts, broken connections
                last = f"{type(exc).__name__}: {exc}".rstrip(": ")
                limit = self.retry.max_retries if connect_retries is None else connect_retries
                if attempt >= limit:
                    if isinstance(exc, httpx.TimeoutException):
                        raise RetriesExhausted(
                            f"{self.what} at {self.shown_url} did not answer within {self.timeout:g}s, "
                            f"{attempt + 1} tries ({last}); raise the timeout, lower the batch size, or check "
                            "the server",
                            attempt + 1,
                            last,
                        ) from None
                    raise RetriesExhausted(
                        f"{self.what} at {self.shown_url} is unreachable after {attempt + 1} tries ({last}); "
                        "check that the server is running and the URL (http://HOST:PORT/v1) is right",
                        attempt + 1,
                        last,
                    ) from None
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise LeafHubError(
                            f"{self.what} at {self.shown_url} answered with something that is not JSON "
                            f"({response.text[:120]!r}); check the URL points at an OpenAI-compatible /v1 endpoint"
                        ) from None
                message = error_message(response)
                last = f"HTTP {response.status_code}" + (f": {message}" if message else "")
                if response.status_code not in RETRYABLE_STATUS and response.status_code < 500:
                    raise HttpStatusError(response.status_code, message, self.shown_url)
                if attempt >= self.retry.max_retries:
                    raise RetriesExhausted(
                        f"{self.what} at {self.shown_url} still fails after {attempt + 1} tries (last: {last}); "
                        "wait and rerun (finished work is kept), lower the request rate, or raise the retry limit",
                        attempt + 1,
                        last,
                    )
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            delay = self.retry.delay(attempt, retry_after)
            attempt += 1
            logger.warning("%s at %s: %s; retry %d in %.1fs", self.what, self.shown_url, last, attempt, delay)
            time.sleep(delay)


def error_message(response: Any) -> str:
    """The error text of an API answer: ``error.message``, ``detail`` or ``message``, else the body."""
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


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number or an HTTP date."""
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
