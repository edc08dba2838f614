"""A minimal Hugging Face Hub look-alike for tests: the HTTP API that ``huggingface_hub`` 2.x calls to publish
and download a repo, served by the standard library on 127.0.0.1.

It implements what ``HfApi.whoami``, ``create_repo``, ``create_branch``, ``create_commit``,
``repo_info``/``model_info``/``dataset_info``/``space_info``, ``list_repo_tree``, ``hf_hub_download`` and
``snapshot_download`` need, following the installed client's requests (``hf_api.py``, ``_commit_api.py``,
``file_download.py``, ``_snapshot_download.py``); the same routes serve ``datasets.load_dataset`` for
datasets seeded with :meth:`HubServer.seed` (parquet files, configs from the card's YAML or file names). Storage is a temp folder of git-style blobs plus in-memory
commits, so tests can inspect exactly what was committed. Space repos work like the others, except that
``create_repo`` must name a Space SDK (``space_sdk``; 400 otherwise, as on the Hub) and their info reports it.

Large files follow the Hub's protocol: preupload answers "lfs" for files of 10 MiB or more, binary files
(a NUL byte in the sample) and paths the repo's ``.gitattributes`` tracks with LFS (the Hub's default list),
"regular" for the rest; LFS files go through the LFS batch API (``{repo}.git/info/lfs/objects/batch``:
upload and verify actions), a PUT of the content (checked against its sha256) and a verify call, and the
commit names them as ``lfsFile`` by sha256; an inline file that should have been LFS is refused as the Hub
refuses it. Downloads of LFS files redirect to a storage URL on another origin (``localhost`` instead of
``127.0.0.1``, as a CDN is another host), with ``X-Linked-Etag`` / ``X-Linked-Size`` as the Hub sends them.
Xet, the Hub's newer storage, is not served: clients run with ``HF_HUB_DISABLE_XET=1`` (the ``hub`` fixture
sets it), which makes huggingface_hub use the LFS protocol above. Metadata as the Hub serves it: ``model_info`` carries the README's front matter (``cardData``,
``pipeline_tag``, ``library_name``, ``model-index``, tags derived from them), and ``validate-yaml`` checks what
the Hub checks (a mapping; license, language, pipeline_tag, tags, datasets and base_model of the right shape,
base models and datasets as repo ids, a model-index with tasks, datasets and metrics; a Space's sdk).

Like the real Hub: writes need a valid token (401 "Invalid credentials in Authorization header" otherwise),
files are addressed by path and overwrite on commit, preupload reports the git oid of files already there
(so unchanged files are skipped by the client), ``create_pr=1`` commits to ``refs/pr/N``. A knob drops the
connection on chosen commit requests, before or after applying them, to test network failures mid-upload.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
LFS_THRESHOLD = 10 * 1024 * 1024  # files this large must go through LFS
# The .gitattributes the Hub starts every repo with (its LFS patterns, in gitattributes glob syntax).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)  # fmt: skip
# What validate-yaml accepts, as the Hub does (a subset of its lists: what cards written here use and more).
LICENSES = {"apache-2.0", "mit", "other", "unknown", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc0-1.0",
            "bsd-3-clause", "gpl-3.0", "lgpl-3.0", "openrail", "llama2", "llama3"}  # fmt: skip
PIPELINE_TAGS = {"sentence-similarity", "feature-extraction", "fill-mask", "text-classification",
                 "token-classification", "question-answering", "text-generation", "text-ranking",
                 "zero-shot-classification", "summarization", "translation"}  # fmt: skip
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a file, as the Hub reports it for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def is_lfs_oid(oid: str) -> bool:
    """Trees hold a git sha1 (40 hex) for a regular file and the content's sha256 (64 hex) for an LFS file."""
    return len(oid) == 64


def lfs_patterns(gitattributes: bytes) -> list[str]:
    return [
        line.split()[0] for line in gitattributes.decode(errors="replace").splitlines()
        if "filter=lfs" in line.split()[1:]
    ]  # fmt: skip


def _matches(path: str, pattern: str) -> bool:
    import fnmatch

    if "/" in pattern:
        return fnmatch.fnmatch(path, pattern)
    return fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern)


def front_matter(text: str) -> dict | None:
    """The YAML metadata block of a README, or None (no block or not a mapping)."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    meta = yaml.safe_load(text[3:end] if end > 0 else "")
    return meta if isinstance(meta, dict) else None


def _is_repo_id(value) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(value, str) or value.startswith(("/", ".", "~")):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def metadata_errors(meta, repo_type: str) -> list[str]:
    """What the Hub's validate-yaml would refuse in a card's metadata."""
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["metadata must be a YAML mapping"]
    errors = []

    def strings(key):
        value = meta.get(key)
        items = [value] if isinstance(value, str) else value
        if value is not None and not (isinstance(items, list) and all(isinstance(v, str) for v in items)):
            errors.append(f'"{key}" must be a string or a list of strings')
            return []
        return items or []

    for license_id in strings("license"):
        if license_id not in LICENSES:
            errors.append(f'"license" must be one of the Hub\'s license ids, not {license_id!r}')
    for code in strings("language"):
        if not (2 <= len(code) <= 3 and code.isalpha() and code.islower()):
            errors.append(f'"language" must hold ISO 639 codes, not {code!r}')
    strings("tags")
    for key in ("base_model", "datasets"):
        for value in strings(key):
            if not _is_repo_id(value):
                errors.append(f'"{key}" must hold Hub repo ids, not {value!r}')
    if "pipeline_tag" in meta and meta["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" {meta["pipeline_tag"]!r} is not a task the Hub knows')
    if "library_name" in meta and not isinstance(meta["library_name"], str):
        errors.append('"library_name" must be a string')
    if "model-index" in meta:
        errors += _model_index_errors(meta["model-index"])
    if repo_type == "space" and meta.get("sdk") not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {", ".join(SPACE_SDKS)}')
    return errors


def _model_index_errors(index) -> list[str]:
    if not isinstance(index, list):
        return ['"model-index" must be a list']
    errors = []
    for entry in index:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append('"model-index" entries need a "name"')
            continue
        for result in entry.get("results") or []:
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            if not isinstance(task.get("type"), str):
                errors.append('"model-index" results need task.type')
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                errors.append('"model-index" results need dataset.type and dataset.name')
            for metric in result.get("metrics") or []:
                if not isinstance(metric.get("type"), str) or not isinstance(
                    metric.get("value"), (int, float)
                ):
                    errors.append('"model-index" metrics need a type and a numeric value')
    return errors


@dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    tree: dict[str, str]  # path -> blob oid
    time: float


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None = None  # Spaces only
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    prs: int = 0

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        matches = [c for oid, c in self.commits.items() if oid.startswith(revision) and len(revision) >= 7]
        return matches[0] if len(matches) == 1 else None

    def history(self, revision: str = "main") -> list[Commit]:
        """Commits reachable from ``revision``, newest first."""
        commit, out = self.resolve(revision), []
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


class HubServer:
    """Start with ``with HubServer(tmp_path) as hub:``; point clients at ``hub.url`` with ``hub.token``."""

    def __init__(self, root: str | Path, token: str = "hf_test_write_token", user: str = "tester"):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.commit_requests = 0
        self.lfs_uploads = 0  # PUTs of LFS content that were stored
        self.lfs_verified = 0
        self._fail_commits: dict[int, str] = {}  # commit request number -> "before" | "after"
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- knobs and inspection ---------------------------------------------------------------------------
    def fail_commit(self, number: int | None = None, mode: str = "before") -> None:
        """Drop the connection on commit request ``number`` (1-based; default: the next one).

        ``mode="before"``: the commit is not applied; ``"after"``: it is applied, but the answer is lost.
        """
        assert mode in ("before", "after")
        with self._lock:
            self._fail_commits[number or self.commit_requests + 1] = mode

    def seed(
        self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", oid: str | None = None
    ) -> Repo:
        """Create ``repo_id`` under any namespace with ``files`` committed (public data a test reads).

        ``oid`` gives that commit a chosen id, for clients that pin a revision (mteb pins its datasets').
        """
        with self._lock:
            repo = self._create_repo(repo_type, repo_id, private=False)
            tree = dict(repo.resolve("main").tree)
            for path, content in files.items():
                lfs = self.upload_mode(tree, path, len(content), content[:512]) == "lfs"
                tree[path] = self._store_lfs(content) if lfs else self._store(content)
            commit = self._new_commit(repo, repo.resolve("main"), "Upload dataset", tree)
            if oid is not None:
                repo.commits[oid] = repo.commits.pop(commit.oid)
                commit.oid = oid
            repo.refs["main"] = commit.oid
        return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        commit = self.repo(repo_id, repo_type).resolve(revision)
        assert commit is not None, f"no revision {revision}"
        return {path: self.blob(oid) for path, oid in commit.tree.items()}

    def blob(self, oid: str) -> bytes:
        return (self.root / "blobs" / oid).read_bytes()

    def lfs_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """The paths of ``revision`` stored through LFS."""
        commit = self.repo(repo_id, repo_type).resolve(revision)
        assert commit is not None, f"no revision {revision}"
        return {path for path, oid in commit.tree.items() if is_lfs_oid(oid)}

    def has_lfs_object(self, sha256: str) -> bool:
        return len(sha256) == 64 and (self.root / "blobs" / sha256).is_file()

    def upload_mode(self, tree: dict[str, str], path: str, size: int, sample: bytes) -> str:
        """ "lfs" or "regular", by the Hub's rules (size, binary sample, .gitattributes patterns)."""
        attributes = self.blob(tree[".gitattributes"]) if ".gitattributes" in tree else b""
        if (
            size >= LFS_THRESHOLD
            or b"\0" in sample
            or any(_matches(path, p) for p in lfs_patterns(attributes))
        ):
            return "lfs"
        return "regular"

    # -- state changes (under the lock) -----------------------------------------------------------------
    def _store_lfs(self, content: bytes) -> str:
        oid = hashlib.sha256(content).hexdigest()
        path = self.root / "blobs" / oid
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return oid

    def _store(self, content: bytes) -> str:
        oid = git_blob_oid(content)
        path = self.root / "blobs" / oid
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return oid

    def _new_commit(self, repo: Repo, parent: Commit | None, summary: str, tree: dict[str, str]) -> Commit:
        seed = json.dumps([parent.oid if parent else None, summary, sorted(tree.items()), time.time_ns()])
        commit = Commit(
            hashlib.sha1(seed.encode()).hexdigest(),
            parent.oid if parent else None,
            summary,
            tree,
            time.time(),
        )
        repo.commits[commit.oid] = commit
        return commit

    def _create_repo(self, repo_type: str, repo_id: str, private: bool, sdk: str | None = None) -> Repo:
        repo = Repo(repo_type, repo_id, private, sdk)
        # The Hub starts every repo with a commit holding its default .gitattributes.
        attrs = self._store(DEFAULT_GITATTRIBUTES.encode())
        repo.refs["main"] = self._new_commit(repo, None, "initial commit", {".gitattributes": attrs}).oid
        self.repos[(repo_type, repo_id)] = repo
        return repo


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.0"  # one request per connection: simple and what a dropped connection needs

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, data, headers: dict | None = None, head: bool = False) -> None:
        body = json.dumps(data).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})}, head=head)

    def _error(self, status: int, message: str, code: str | None = None, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, head=head)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _auth(self) -> str | None:
        """'ok' for the configured token, 'bad' for another one, None when no token was sent."""
        value = self.headers.get("Authorization", "")
        if not value:
            return None
        return "ok" if value == f"Bearer {self.server_hub.token}" else "bad"

    def _drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(2)
        except OSError:
            pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        with hub._lock:
            hub.requests.append((method, split.path))
        with contextlib.suppress(BrokenPipeError):
            self._route(method, parts)

    def _route(self, method: str, parts: list[str]) -> None:
        head = method == "HEAD"
        # Storage ("the CDN / S3"): signed URLs in the real Hub, so no token here either.
        if len(parts) == 2 and parts[0] == "lfs-storage" and method == "PUT":
            return self._lfs_put(parts[1])
        if len(parts) == 2 and parts[0] == "lfs-storage" and method in ("GET", "HEAD"):
            return self._lfs_get(parts[1], head)
        if len(parts) >= 2 and parts[-1] == "batch" and "info" in parts and method == "POST":
            return self._lfs_batch(parts)
        if len(parts) >= 3 and parts[-2:] == ["lfs", "verify"] and method == "POST":
            return self._lfs_verify()
        if parts[:1] == ["api"]:
            rest = parts[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if len(rest) >= 3 and rest[0] in ("models", "datasets", "spaces"):
                repo_type = rest[0][:-1]
                repo_id = f"{rest[1]}/{rest[2]}"
                action, args = (rest[3], rest[4:]) if len(rest) > 3 else ("info", [])
                return self._repo_api(method, repo_type, repo_id, action, args)
            return self._error(404, f"no such API route: /{'/'.join(parts)}")
        # File downloads: /{ns}/{name}/resolve/{rev}/{path} (datasets/ and spaces/ prefixed).
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
        return self._error(404, "not found", head=head)

    # -- endpoints --------------------------------------------------------------------------------------
    def _whoami(self) -> None:
        hub = self.server_hub
        if self._auth() != "ok":
            return self._error(401, INVALID_CREDENTIALS)
        self._json(
            200,
            {
                "type": "user",
                "name": hub.user,
                "fullname": hub.user.title(),
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            },
        )

    def _create_repo(self) -> None:
        hub = self.server_hub
        payload = json.loads(self._body() or b"{}")
        if self._auth() != "ok":
            return self._error(401, INVALID_CREDENTIALS)
        namespace = payload.get("organization") or hub.user
        if namespace != hub.user:
            return self._error(
                403, f"You don't have the rights to create a repo under the namespace {namespace}"
            )
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{hub.url}/{_PREFIX[repo_type]}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        sdk = payload.get("sdk") if repo_type == "space" else None
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                return self._json(409, {"error": f"You already created this {repo_type} repo", "url": url})
            if repo_type == "space" and sdk not in SPACE_SDKS:
                return self._error(400, f"Invalid sdk {sdk!r}: a Space needs one of {', '.join(SPACE_SDKS)}")
            hub._create_repo(repo_type, repo_id, private, sdk)
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body() or b"{}")
        content = payload.get("content", "")
        errors = []
        try:
            meta = front_matter(content) if content.startswith("---") else None
            if (
                content.startswith("---")
                and meta is None
                and yaml.safe_load(content[3 : content.find("\n---", 3)])
            ):
                errors.append("metadata must be a YAML mapping")
            errors += metadata_errors(meta, payload.get("repoType") or "model")
        except yaml.YAMLError as exc:
            errors.append(f"invalid YAML: {exc}")
        self._json(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})

    # -- LFS --------------------------------------------------------------------------------------------
    def _lfs_batch(self, parts: list[str]) -> None:
        hub = self.server_hub
        body = json.loads(self._body() or b"{}")
        if self._auth() != "ok":
            return self._error(401, INVALID_CREDENTIALS)
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        repo_id = f"{parts[0]}/{parts[1].removesuffix('.git')}"
        if (repo_type, repo_id) not in hub.repos:
            return self._error(404, "Repository not found", "RepoNotFound")
        if body.get("operation") != "upload" or "basic" not in (body.get("transfers") or ["basic"]):
            return self._error(400, "this LFS server takes basic uploads only")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            entry = {"oid": oid, "size": size}
            if not hub.has_lfs_object(oid):  # already stored: no actions, the client skips the upload
                entry["actions"] = {
                    "upload": {"href": f"{hub.url}/lfs-storage/{oid}", "header": {}},
                    "verify": {"href": f"{hub.url}/{'/'.join(parts[:2])}/info/lfs/verify"},
                }
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str) -> None:
        hub = self.server_hub
        content = self._body()
        if hashlib.sha256(content).hexdigest() != oid:
            return self._error(400, "uploaded content does not match its sha256")
        with hub._lock:
            hub._store_lfs(content)
            hub.lfs_uploads += 1
        self._send(200)

    def _lfs_verify(self) -> None:
        hub = self.server_hub
        body = json.loads(self._body() or b"{}")
        if self._auth() != "ok":
            return self._error(401, INVALID_CREDENTIALS)
        oid, size = body.get("oid", ""), body.get("size")
        if not hub.has_lfs_object(oid) or (hub.root / "blobs" / oid).stat().st_size != size:
            return self._error(404, f"LFS object {oid} not found or of another size")
        with hub._lock:
            hub.lfs_verified += 1
        self._json(200, {})

    def _lfs_get(self, oid: str, head: bool) -> None:
        hub = self.server_hub
        if not hub.has_lfs_object(oid):
            return self._error(404, "not found", head=head)
        content = hub.blob(oid)
        self._send(200, content, {"Content-Type": "application/octet-stream", "ETag": f'"{oid}"'}, head=head)

    def _repo_api(self, method: str, repo_type: str, repo_id: str, action: str, args: list[str]) -> None:
        hub = self.server_hub
        head = method == "HEAD"
        body = self._body() if method == "POST" else b""
        auth = self._auth()
        if auth == "bad":
            return self._error(401, INVALID_CREDENTIALS, head=head)
        with hub._lock:
            repo = hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and auth != "ok"):
            return self._error(404, "Repository not found", "RepoNotFound", head=head)
        if method == "POST" and auth != "ok":
            return self._error(401, "You must be authenticated to write", head=head)

        if action in ("info", "revision") and method in ("GET", "HEAD"):
            return self._info(repo, args[0] if args else "main", head)
        if action == "tree" and method == "GET" and args:
            return self._tree(repo, args[0], "/".join(args[1:]))
        if action == "refs" and method == "GET":
            branches = [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                for n, c in repo.refs.items()
                if not n.startswith("refs/")
            ]
            return self._json(200, {"branches": branches, "tags": [], "converts": []})
        if action == "branch" and method == "POST" and args:
            return self._create_branch(repo, "/".join(args), json.loads(body or b"{}"))
        if action == "preupload" and method == "POST" and args:
            return self._preupload(repo, args[0], json.loads(body or b"{}"))
        if action == "commit" and method == "POST" and args:
            return self._commit(repo, args[0], body)
        return self._error(404, f"no such repo route: {action}", head=head)

    def _info(self, repo: Repo, revision: str, head: bool) -> None:
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
        data = {
            "id": repo.repo_id,
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "tags": [],
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.time)),
            "siblings": [{"rfilename": path} for path in sorted(commit.tree)],
        }
        if repo.repo_type == "space":
            data["sdk"] = repo.sdk
        readme = commit.tree.get("README.md")
        meta = None
        if readme is not None:
            try:
                meta = front_matter(self.server_hub.blob(readme).decode(errors="replace"))
            except yaml.YAMLError:
                meta = None
        if meta:
            data["cardData"] = meta
            tags = meta.get("tags") or []
            data["tags"] = list(tags) if isinstance(tags, list) else [tags]
            for key in ("library_name", "pipeline_tag"):
                if isinstance(meta.get(key), str):
                    data[key] = meta[key]
                    if key == "library_name":
                        data["tags"].append(meta[key])
            for key, prefix in (
                ("license", "license:"),
                ("base_model", "base_model:"),
                ("datasets", "dataset:"),
            ):
                values = meta.get(key)
                data["tags"] += [prefix + v for v in ([values] if isinstance(values, str) else values or [])]
            if "model-index" in meta:
                data["model-index"] = meta["model-index"]
        self._json(200, data, head=head)

    def _tree(self, repo: Repo, revision: str, path: str) -> None:
        hub = self.server_hub
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries, folders = [], set()
        for file_path, oid in sorted(commit.tree.items()):
            if not file_path.startswith(prefix):
                continue
            rel = file_path[len(prefix) :]
            if "/" in rel and not recursive:
                folders.add(prefix + rel.split("/")[0])
                continue
            for i in range(rel.count("/")):
                folders.add(prefix + "/".join(rel.split("/")[: i + 1]))
            size = (hub.root / "blobs" / oid).stat().st_size
            entry = {"type": "file", "oid": oid, "size": size, "path": file_path}
            if is_lfs_oid(oid):
                pointer = lfs_pointer(oid, size)
                entry["oid"] = git_blob_oid(pointer)
                entry["lfs"] = {"oid": oid, "size": size, "pointerSize": len(pointer)}
            entries.append(entry)
        dirs = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(folders)
        ]
        self._json(200, dirs + entries)

    def _create_branch(self, repo: Repo, branch: str, payload: dict) -> None:
        hub = self.server_hub
        with hub._lock:
            if branch in repo.refs:
                return self._error(409, f"Reference already exists: refs/heads/{branch}")
            start = repo.resolve(payload.get("startingPoint") or "main")
            if start is None:
                return self._error(404, "Invalid starting point", "RevisionNotFound")
            repo.refs[branch] = start.oid
        self._json(200, {})

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> None:
        commit = repo.resolve(revision)
        if commit is None and self.query.get("create_pr") != "1":
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        tree = commit.tree if commit else {}
        hub = self.server_hub
        files = [
            {
                "path": f["path"],
                "uploadMode": hub.upload_mode(
                    tree, f["path"], int(f.get("size", 0)), base64.b64decode(f.get("sample", ""))
                ),
                "shouldIgnore": False,
                "oid": tree.get(f["path"]),  # a git sha1, or the sha256 of an LFS file
            }
            for f in payload.get("files", [])
        ]
        self._json(200, {"files": files, "commitOid": commit.oid if commit else None})

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        hub = self.server_hub
        with hub._lock:
            hub.commit_requests += 1
            failure = hub._fail_commits.pop(hub.commit_requests, None)
        if failure == "before":
            return self._drop_connection()
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._error(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr") == "1"
        with hub._lock:
            parent = repo.resolve(revision)
            if parent is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            if header.get("parentCommit") and not parent.oid.startswith(header["parentCommit"]):
                return self._error(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(parent.tree)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    content = base64.b64decode(value["content"])
                    if hub.upload_mode(tree, value["path"], len(content), content[:512]) == "lfs":
                        return self._error(
                            400,
                            f"Your push was rejected because {value['path']} is a binary file or larger than 10 MiB: "
                            "it must be stored with Git LFS or Xet",
                        )
                    tree[value["path"]] = hub._store(content)
                elif key == "lfsFile":
                    if value.get("algo") != "sha256" or not hub.has_lfs_object(value.get("oid", "")):
                        return self._error(400, f"LFS object of {value.get('path')} was not uploaded")
                    tree[value["path"]] = value["oid"]
                elif key == "deletedFile":
                    tree.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    tree = {p: o for p, o in tree.items() if not p.startswith(prefix)}
                else:
                    return self._error(400, f"unknown commit operation {key}")
            commit = hub._new_commit(repo, parent, header.get("summary", ""), tree)
            base = f"{hub.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}"
            pr_url = None
            if create_pr:
                repo.prs += 1
                repo.refs[f"refs/pr/{repo.prs}"] = commit.oid
                pr_url = f"{base}/discussions/{repo.prs}"
            else:
                repo.refs[revision] = commit.oid
        if failure == "after":
            return self._drop_connection()
        self._json(
            200,
            {"commitUrl": f"{base}/commit/{commit.oid}", "commitOid": commit.oid, "pullRequestUrl": pr_url},
        )

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> None:
        hub = self.server_hub
        auth = self._auth()
        if auth == "bad":
            return self._error(401, INVALID_CREDENTIALS, head=head)
        with hub._lock:
            repo = hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and auth != "ok"):
            return self._error(404, "Repository not found", "RepoNotFound", head=head)
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
        oid = commit.tree.get(path)
        if oid is None:
            return self._error(404, f"Entry not found: {path}", "EntryNotFound", head=head)
        if is_lfs_oid(oid):
            # As the Hub: a redirect to the storage host (another origin: the token is not sent there), with
            # the file's sha256 and size in X-Linked-* headers; ETag is the pointer's git oid.
            size = (hub.root / "blobs" / oid).stat().st_size
            storage = hub.url.replace("127.0.0.1", "localhost")
            headers = {
                "Location": f"{storage}/lfs-storage/{oid}",
                "ETag": f'"{git_blob_oid(lfs_pointer(oid, size))}"',
                "X-Linked-Etag": f'"{oid}"',
                "X-Linked-Size": str(size),
                "X-Repo-Commit": commit.oid,
            }
            return self._send(302, b"", headers, head=head)
        content = hub.blob(oid)
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{oid}"',
            "X-Repo-Commit": commit.oid,
        }
        self._send(200, content, headers, head=head)
