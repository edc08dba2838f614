"""``leaf-hub publish``: push a leaf, a pair, the Vocabulary, a teacher cache or a Space folder to the Hub.

One publish is one commit: the repo is created if missing (``create_repo(exist_ok=True)``), then every file
of the folder (weights, tokenizer, sentence-transformers config, ``onnx/``, reports, plots, and the card) goes
up in a single ``create_commit``. A commit is all or nothing, and files are addressed by path, so a publish
that failed half-way (network down, wrong token) is simply rerun: files overwrite by path and unchanged
ones are skipped by huggingface_hub, nothing is duplicated. ``--dry-run`` prints exactly the files and the
commit it would make without touching the network.

The card: a folder without README.md, or with the generic card sentence-transformers writes on save, or
with a card from ``leaf-hub card`` (marker comment) gets a freshly rendered card naming the target repo;
a hand-written README (no marker) is uploaded as it is. ``--keep-readme`` always uploads the folder's own.

A Space folder (README front matter naming an ``sdk``, as ``leaf-hub space --export`` writes it) goes to a
Space repo, created with that SDK; its README is its configuration and is always uploaded as it is.

Checked before anything is sent: the repo id, with huggingface_hub's own validator (so what it would refuse
is refused here, as the input's fault); and that the card names no model by a local path: a teacher or
student known only as a local folder needs its Hub id (``teacher_repo_id`` / ``student_repo_id``), and a
kept README that shows such a path is refused. Large files go up the way the Hub takes them (Git LFS:
huggingface_hub asks the Hub which files are LFS and uploads those through its LFS batch API).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from leaf_hub.errors import ConfigError, LeafHubError
from leaf_hub.files import CHECKED_RECORD
from leaf_hub.hub.card import LeafFacts, leaf_hub_version
from leaf_hub.offline import hub_offline

logger = logging.getLogger(__name__)

# Never uploaded: hidden files (temp files of atomic writes, .git, .cache), Python caches, the Vocabulary
# builder's journal (its content is already in the dataset files), unfinished downloads and a store's record
# of checked files (this machine's sizes, mtimes and inodes: meaningless anywhere else).
EXCLUDE = (".*", "__pycache__", "*.pyc", "*.tmp", "*.partial", "*.lock", "journal.jsonl", CHECKED_RECORD)
TOKEN_HELP = (
    "log in with `hf auth login`, set HF_TOKEN, or pass --token; create a token with write access at "
    "https://huggingface.co/settings/tokens"
)


@dataclass
class PlannedFile:
    path_in_repo: str
    source: Path | bytes  # a local file, or rendered content (the card)
    size: int
    note: str = ""


@dataclass
class PublishPlan:
    folder: Path
    kind: str
    repo_id: str
    repo_type: str
    private: bool
    revision: str | None
    create_pr: bool
    commit_message: str
    endpoint: str
    files: list[PlannedFile] = field(default_factory=list)
    space_sdk: str | None = None  # a Space repo is created with its SDK (gradio, ...)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        """What the publish does, file by file (the ``--dry-run`` output)."""
        branch = self.revision or "main"
        target = f"a pull request against {branch}" if self.create_pr else f"branch {branch}"
        lines = [
            f"endpoint: {self.endpoint}",
            f"repo:     {self.repo_id} ({self.repo_type}{f', sdk {self.space_sdk}' if self.space_sdk else ''}; "
            f"created {'private' if self.private else 'public'} if missing)",
            f"commit:   {self.commit_message!r} -> {target}",
            f"content:  {self.kind} from {self.folder}",
            f"files:    {len(self.files)}, {human_size(self.total_size)} ({self.total_size:,} bytes)",
        ]
        width = max((len(f"{f.size:,}") for f in self.files), default=1)
        for f in self.files:
            lines.append(f"  {f.size:>{width},}  {f.path_in_repo}{f'  ({f.note})' if f.note else ''}")
        return "\n".join(lines)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _excluded(relative: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in EXCLUDE)


def collect_files(folder: Path, include: list[str] | None = None) -> dict[str, Path]:
    """path in repo -> local file: the folder's files (minus EXCLUDE), plus ``include`` files/folders."""
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not _excluded(relative):
            files[relative.as_posix()] = path
    for item in include or []:
        extra = Path(item)
        if extra.is_file():
            files[extra.name] = extra
        elif extra.is_dir():
            for path in sorted(extra.rglob("*")):
                relative = path.relative_to(extra)
                if path.is_file() and not _excluded(relative):
                    files[(Path(extra.name) / relative).as_posix()] = path
        else:
            raise LeafHubError(f"--include {item} does not exist; give files or folders to add to the upload")
    return files


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when the Hub takes it as ``OWNER/NAME``, else :class:`ConfigError` saying why.

    The rules are huggingface_hub's own (:func:`huggingface_hub.utils.validate_repo_id`: letters, digits,
    ``-``, ``_``, ``.``; no ``--`` or ``..``; not starting or ending with ``-`` or ``.``; at most 96
    characters), checked here so a bad id is the input's fault before anything is sent.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError("repo_id", f"{{option}} {repo_id!r} must look like USER/NAME (or ORG/NAME)")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ConfigError(
            "repo_id", f"{{option}} {repo_id!r} is not a valid Hub repo id: {str(exc).splitlines()[0]}"
        ) from None
    return repo_id


def _check_no_local_models(folder: Path, repo_id: str, facts: LeafFacts, readme: str | None) -> None:
    """Refuse a public card that would name a model by a local path (see the module docstring)."""
    from leaf_hub.hub.card import local_models

    if readme is not None:
        for role, path in facts.local_paths.items():
            if path in readme:
                raise LeafHubError(
                    f"{folder / 'README.md'} shows the {role}'s local path {path!r}, which no one else can load; "
                    "edit it out (or let publish render the card: drop --keep-readme / delete the README)"
                )
        return
    for role, path in local_models(facts).items():
        raise ConfigError(
            f"{role}_repo_id",
            f"the card of {repo_id} would name the {role} only as the local folder {path!r}, which no "
            f"one else can load; give its Hub id with {{option}} OWNER/NAME",
        )


def plan_publish(
    folder: str | Path,
    repo_id: str,
    repo_type: str = "auto",
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    keep_readme: bool = False,
    include: list[str] | None = None,
    *,
    teacher_repo_id: str | None = None,
    student_repo_id: str | None = None,
    bench: str | Path | None = None,
) -> PublishPlan:
    """Decide everything a publish uploads, without any network access.

    ``teacher_repo_id`` / ``student_repo_id`` and ``bench`` are the card's (see
    :func:`leaf_hub.hub.card.model_facts`); ``bench`` is also uploaded as ``bench_report.json``.
    """
    from leaf_hub.hub.card import (
        BENCH_REPORT,
        DATASET_KINDS,
        MODEL_KINDS,
        detect_kind,
        is_generated_card,
        is_sentence_transformers_card,
        model_facts,
        render_card,
    )
    from leaf_hub.space.export import read_space_config

    folder = Path(folder)
    if not folder.is_dir():
        raise LeafHubError(
            f"{folder} is not a folder; give a leaf folder (OUTPUT/leaf), a pair or a dataset folder"
        )
    check_repo_id(repo_id)
    space = read_space_config(folder)
    if space is not None:
        return _plan_space(
            folder, space, repo_id, repo_type, private, revision, create_pr, commit_message, include
        )
    if repo_type == "space":
        raise LeafHubError(
            f"{folder} is not a Space folder (no README.md front matter with an sdk); write one with "
            "`leaf-hub space --export DIR`"
        )
    if not (folder / "modules.json").is_file() and (folder / "leaf" / "modules.json").is_file():
        raise LeafHubError(
            f"{folder} is a distillation run folder; publish its final model: {folder / 'leaf'}"
        )
    kind = detect_kind(folder)
    natural_type = "dataset" if kind in DATASET_KINDS else "model"
    if repo_type == "auto":
        repo_type = natural_type
    elif repo_type != natural_type:
        logger.warning("publishing a %s as a %s repo, as asked", kind, repo_type)
    files = collect_files(folder, include)
    if not files:
        raise LeafHubError(f"{folder} has no files to publish")
    if bench is not None:
        if kind not in MODEL_KINDS:
            raise ConfigError("bench", f"{{option}} applies to a leaf or a pair, not to a {kind} dataset")
        if not Path(bench).is_file():
            raise ConfigError(
                "bench", f"{{option}} {str(bench)!r} does not exist; give the JSON leaf-hub bench wrote"
            )
        files[BENCH_REPORT] = Path(bench)
    planned = [PlannedFile(p, src, src.stat().st_size) for p, src in files.items() if p != "README.md"]
    readme = files.get("README.md")
    text = readme.read_text(encoding="utf-8", errors="replace") if readme else None
    card_options = {"teacher_repo_id": teacher_repo_id, "student_repo_id": student_repo_id, "bench": bench}
    render = not (keep_readme and text is not None) and (
        text is None or is_generated_card(text) or is_sentence_transformers_card(text)
    )
    if kind in MODEL_KINDS:
        facts = model_facts(folder, kind, **card_options)
        _check_no_local_models(folder, repo_id, facts, None if render else text)
    if keep_readme and text is not None:
        planned.append(PlannedFile("README.md", readme, readme.stat().st_size, "the folder's own"))
    elif not render:
        planned.append(PlannedFile("README.md", readme, readme.stat().st_size, "hand-written, kept"))
    else:
        options = card_options if kind in MODEL_KINDS else {}
        content = render_card(folder, kind, repo_id, **options).encode("utf-8")
        why = "the folder has none" if text is None else "replaces the folder's generated card"
        planned.append(PlannedFile("README.md", content, len(content), f"rendered by leaf-hub card: {why}"))
    planned.sort(key=lambda f: f.path_in_repo)
    message = commit_message or f"Upload {kind} with leaf-hub {leaf_hub_version()}"
    return PublishPlan(
        folder, kind, repo_id, repo_type, private, revision, create_pr, message, _endpoint(), planned
    )


def _plan_space(
    folder: Path,
    config: dict,
    repo_id: str,
    repo_type: str,
    private: bool,
    revision: str | None,
    create_pr: bool,
    commit_message: str | None,
    include: list[str] | None,
) -> PublishPlan:
    """The plan for a Space folder: every file as it is, the README (the Space's config) included."""
    from huggingface_hub import constants

    sdk = str(config["sdk"])
    if sdk not in constants.SPACES_SDK_TYPES:
        raise LeafHubError(
            f"{folder / 'README.md'} names sdk {sdk!r}; a Space runs one of {', '.join(constants.SPACES_SDK_TYPES)}"
        )
    app_file = config.get("app_file")
    if sdk in ("gradio", "streamlit") and not (app_file and (folder / str(app_file)).is_file()):
        raise LeafHubError(
            f"{folder} is a {sdk} Space without its app_file ({app_file or 'not set'}) in README.md"
        )
    if repo_type == "auto":
        repo_type = "space"
    elif repo_type != "space":
        logger.warning("publishing a Space folder as a %s repo, as asked", repo_type)
    files = collect_files(folder, include)
    planned = [
        PlannedFile(p, src, src.stat().st_size, "Space config, kept" if p == "README.md" else "")
        for p, src in files.items()
    ]
    message = commit_message or f"Upload Space with leaf-hub {leaf_hub_version()}"
    return PublishPlan(
        folder,
        "space",
        repo_id,
        repo_type,
        private,
        revision,
        create_pr,
        message,
        _endpoint(),
        planned,
        space_sdk=sdk if repo_type == "space" else None,
    )


@dataclass
class PublishResult:
    commit_url: str
    commit_oid: str
    pr_url: str | None
    changed: int
    unchanged: int


def publish(plan: PublishPlan, token: str | None = None) -> PublishResult:
    """Create the repo if needed and make the plan's one commit. Errors become LeafHubError."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
    from huggingface_hub.utils import get_token

    check_repo_id(plan.repo_id)
    token = token or get_token()
    if not token:
        raise LeafHubError(f"no Hugging Face token found to publish {plan.repo_id}; {TOKEN_HELP}")
    if hub_offline():
        raise LeafHubError(
            f"the Hub at {plan.endpoint} is unreachable or offline mode is on (HF_HUB_OFFLINE); check the "
            "network (or HF_ENDPOINT) and unset HF_HUB_OFFLINE, then rerun"
        )
    api = HfApi(
        endpoint=plan.endpoint, token=token, library_name="leaf-hub", library_version=leaf_hub_version()
    )
    network_errors = _network_errors()
    step = "checking the token"
    try:
        try:
            user = api.whoami(token=token)
        except HfHubHTTPError as exc:
            if _status(exc) == 401:
                raise LeafHubError(
                    f"the Hub at {plan.endpoint} rejected the token (401 Unauthorized); {TOKEN_HELP}"
                ) from exc
            raise
        logger.info("publishing as %s to %s", user.get("name", "?"), plan.endpoint)
        step = "creating the repo"
        sdk = {"space_sdk": plan.space_sdk} if plan.repo_type == "space" else {}
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True, **sdk)
        if plan.revision and plan.revision != "main":
            step = f"creating branch {plan.revision}"
            api.create_branch(plan.repo_id, branch=plan.revision, repo_type=plan.repo_type, exist_ok=True)
        step = "uploading the commit"
        operations = [CommitOperationAdd(f.path_in_repo, _source(f.source)) for f in plan.files]
        info = api.create_commit(
            plan.repo_id,
            operations,
            commit_message=plan.commit_message,
            commit_description=f"{len(plan.files)} files from {plan.folder.name}/ by leaf-hub {leaf_hub_version()}",
            repo_type=plan.repo_type,
            revision=plan.revision,
            create_pr=plan.create_pr,
        )
    except LeafHubError:
        raise
    except OfflineModeIsEnabled as exc:
        raise LeafHubError(f"offline mode is on (HF_HUB_OFFLINE): cannot publish to {plan.endpoint}") from exc
    except network_errors as exc:
        raise LeafHubError(
            f"network failure while {step} at {plan.endpoint} ({exc.__class__.__name__}: {exc}); the commit may "
            "or may not have been applied: rerun the same command, it overwrites files by path and skips "
            "unchanged ones, so nothing is duplicated"
        ) from exc
    except HfHubHTTPError as exc:
        status = _status(exc)
        if status in (401, 403):
            raise LeafHubError(
                f"the Hub refused {step} for {plan.repo_id} ({status}): the token lacks write access to this "
                f"namespace, or the repo belongs to someone else; {TOKEN_HELP}"
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise LeafHubError(f"the Hub refused {step} for {plan.repo_id}: {first}") from exc
    except HFValidationError as exc:  # huggingface_hub's own checks, before anything is sent
        raise LeafHubError(f"invalid input while {step} (checked before sending): {exc}") from exc
    except ValueError as exc:  # the Hub's metadata validation of README.md (validate-yaml answered 400)
        raise LeafHubError(f"the Hub refused {step} for {plan.repo_id}: {exc}") from exc
    unchanged = sum(
        1 for op in operations if getattr(op, "_remote_oid", None) and op._remote_oid == op._local_oid
    )
    return PublishResult(info.commit_url, info.oid, info.pr_url, len(operations) - unchanged, unchanged)


def _source(source: Path | bytes) -> str | bytes:
    return source if isinstance(source, bytes) else str(source)


def _status(exc) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport-level failures of the HTTP client huggingface_hub uses (httpx2 in 2.x, httpx before)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx", "requests"):
        try:
            lib = __import__(module)
        except ImportError:
            continue
        for name in ("TransportError", "ConnectionError", "Timeout"):
            cls = getattr(lib, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                errors.append(cls)
    return tuple(errors)


def quiet_http_logs() -> None:
    """One INFO line per HTTP request drowns the stage's own messages; keep them for --verbose."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
