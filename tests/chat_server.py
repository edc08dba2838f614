"""A scripted OpenAI-compatible chat server for the Vocabulary builder's tests.

It speaks ``POST /v1/chat/completions`` over real HTTP on 127.0.0.1 (standard library server in a thread),
reads the batch of terms from the prompt (the JSON list after ``Terms:``) and answers per a script:

- request-level actions, consumed one per request: ``"ok"``, ``"429"`` (with ``Retry-After: 0``), ``"500"``,
  ``"503"``, ``"garbage"`` (200 with text that is not JSON), ``"fence"`` (valid JSON inside a Markdown fence),
  ``"not-completion"`` (200 with a body that is not a chat completion);
- per-term actions, consumed one per time the term is asked: ``"good"``, ``"missing"`` (left out),
  ``"crossref"``, ``"noterm"`` (statements without the term), ``"mixed"`` (one good, one without the term, one
  cross-reference), ``"empty"`` (no statements), ``"string"`` (a string instead of a list), ``"upper"`` (good,
  but the key in upper case);
- ``hold_after=K``: requests after the K-th block until :meth:`release`, then get their connection dropped
  unanswered (to kill a client while it waits).

``asked`` counts, per term, the requests that asked it and got an answer (held-then-dropped ones do not).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TERMS = re.compile(r"Terms:\s*(\[.*\])", re.DOTALL)


def good_statements(term: str) -> list[str]:
    return [
        f"{term.capitalize()} is a word in the test vocabulary.",
        f"A dictionary lists {term} with its meaning.",
    ]


class ChatServer:
    def __init__(self, api_key: str | None = None, hold_after: int | None = None, delay: float = 0.0):
        self.api_key = api_key
        self.hold_after = hold_after
        self.delay = delay
        self.script: deque[str] = deque()
        self.term_script: dict[str, deque[str]] = defaultdict(deque)
        self.asked: Counter[str] = Counter()
        self.requests: list[dict] = []  # {"time", "terms", "status", "body"}
        self.held = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- scripting ------------------------------------------------------------------------------------
    def then(self, *actions: str) -> ChatServer:
        self.script.extend(actions)
        return self

    def term(self, term: str, *actions: str) -> ChatServer:
        self.term_script[term].extend(actions)
        return self

    def release(self) -> None:
        self._release.set()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> ChatServer:
        chat = self

        class Handler(_Handler):
            server_chat = chat

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- answering ------------------------------------------------------------------------------------
    def answer_for(self, term: str) -> tuple[str, object] | None:
        action = self.term_script[term].popleft() if self.term_script[term] else "good"
        if action == "missing":
            return None
        if action == "crossref":
            return term, [
                f"{term} may refer to several things.",
                f"{term.capitalize()} also refers to a town.",
            ]
        if action == "noterm":
            return term, ["It is a thing.", "This is used often."]
        if action == "mixed":
            return term, [
                good_statements(term)[0],
                "It is also used in cooking.",
                f"{term} may refer to a band.",
            ]
        if action == "empty":
            return term, []
        if action == "string":
            return term, good_statements(term)[0]
        if action == "upper":
            return term.upper(), good_statements(term)
        return term, good_statements(term)


class _Handler(BaseHTTPRequestHandler):
    server_chat: ChatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: dict | str, headers: dict | None = None) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _completion(self, content: str) -> dict:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "test-model",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
        }

    def do_POST(self):
        chat = self.server_chat
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._reply(404, {"error": {"message": f"unknown path {self.path}"}})
        if chat.api_key and self.headers.get("Authorization") != f"Bearer {chat.api_key}":
            return self._reply(
                401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
            )
        payload = json.loads(body)
        prompt = payload["messages"][-1]["content"]
        match = _TERMS.search(prompt)
        terms = json.loads(match.group(1)) if match else []
        with chat._lock:
            number = len(chat.requests) + 1
            record = {"time": time.monotonic(), "terms": terms, "status": None, "payload": payload}
            chat.requests.append(record)
            action = chat.script.popleft() if chat.script else "ok"
        if chat.hold_after is not None and number > chat.hold_after:
            with chat._lock:
                chat.held += 1
            chat._release.wait()
            record["status"] = "dropped"
            self.close_connection = True
            return None
        if chat.delay:
            time.sleep(chat.delay)
        if action in ("429", "500", "503"):
            record["status"] = int(action)
            headers = {"Retry-After": "0"} if action == "429" else {}
            return self._reply(int(action), {"error": {"message": f"scripted {action}"}}, headers)
        with chat._lock:
            chat.asked.update(t.lower() for t in terms)
        record["status"] = 200
        if action == "garbage":
            return self._reply(200, self._completion("Sure! Here are the definitions you asked for."))
        if action == "not-completion":
            return self._reply(200, {"object": "error", "detail": "no choices"})
        answer = {}
        for term in terms:
            item = chat.answer_for(term)
            if item is not None:
                answer[item[0]] = item[1]
        content = json.dumps(answer)
        if action == "fence":
            content = f"```json\n{content}\n```"
        return self._reply(200, self._completion(content))
