"""Distillation, the main job: texts -> teacher cache -> warm start -> training -> the leaf.

:func:`distill` runs the whole LEAF recipe from a :class:`~leaf_hub.training.config.DistillConfig`.
Everything it produces lands in the run folder (``output``)::

    teacher-cache/       teacher embeddings (reused by reruns; ``cache`` puts it elsewhere to share it)
    leaf/                the best leaf by validation L2, a plain sentence-transformers folder
    checkpoints/epoch-N  one leaf per finished epoch
    state/               optimizer, RNG and progress for ``resume``
    metrics.jsonl        validation L2 / cosine over time
    validation.jsonl     the held-out texts (for ``leaf-hub evaluate``)
    run.json             options and results

and returns a :class:`DistillResult`, the facts also written to ``leaf/leaf_run.json``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from leaf_hub.data.store import shuffled_rows
from leaf_hub.data.tokens import TokenReport
from leaf_hub.errors import ConfigError, LeafHubError
from leaf_hub.training.config import DistillConfig, TrainConfig

logger = logging.getLogger(__name__)

RUN_FACTS = "leaf_run.json"


@dataclass
class ValidationScore:
    """Mean L2 distance and cosine between leaf and teacher embeddings on the held-out texts."""

    l2: float
    cosine: float

    @classmethod
    def from_json(cls, payload: Any) -> ValidationScore | None:
        """From ``{"l2": ..., "cosine": ...}``; None when a file holds no such pair of numbers."""
        if not isinstance(payload, dict):
            return None
        values = {name: payload.get(name) for name in ("l2", "cosine")}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
            return None
        return cls(**values)


@dataclass
class DistillResult:
    """What a distillation run produced: the facts written to ``leaf/leaf_run.json`` (and run.json).

    ``validation`` is the best leaf's score (the one saved in ``leaf/``). A run of this version sets every
    field; a ``leaf_run.json`` written by an earlier version, or by hand, may lack some keys, which
    :meth:`from_json` leaves at their defaults (None, or empty), so the model card still reads it.
    ``teacher_repo_id`` / ``student_repo_id`` name a teacher or student loaded from a local folder by its
    Hub id (the card shows only Hub ids); they are written only when set.
    """

    teacher: str | None = None
    teacher_fingerprint: str | None = None
    student: str | None = None
    data: list[str] = field(default_factory=list)
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    num_texts: int | None = None
    num_train: int | None = None
    num_validation: int | None = None
    steps: int | None = None
    epochs: float | None = None
    batch_size: int | None = None
    hardware: str | None = None
    wall_time_s: float | None = None
    train_time_s: float | None = None
    validation: ValidationScore | None = None
    best_val_l2: float | None = None
    warm_start: dict[str, Any] | None = None
    leaf_hub_version: str | None = None
    # Texts cut to the leaf's length and texts left out as unreadable, by kind (None in runs before 0.1).
    tokens: TokenReport | None = None
    teacher_repo_id: str | None = field(default=None, metadata={"omit_none": True})
    student_repo_id: str | None = field(default=None, metadata={"omit_none": True})
    output: Path | None = field(default=None, metadata={"json": False})

    @property
    def leaf_dir(self) -> Path | None:
        """The saved leaf, a sentence-transformers folder."""
        return None if self.output is None else self.output / "leaf"

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in fields(self)
            if f.metadata.get("json", True)
            and not (f.metadata.get("omit_none") and getattr(self, f.name) is None)
        }

    @classmethod
    def from_json(cls, payload: Any, output: Path | None = None) -> DistillResult:
        """The facts from a ``leaf_run.json`` payload, this version's or an earlier one (missing keys stay at
        their defaults; keys this version does not know are ignored)."""
        if not isinstance(payload, dict):
            raise LeafHubError(
                f"run facts must be a JSON object, not {type(payload).__name__}; rerun the distillation"
            )
        known = {f.name for f in fields(cls) if f.metadata.get("json", True)}
        values = {k: v for k, v in payload.items() if k in known}
        values["validation"] = ValidationScore.from_json(payload.get("validation"))
        data = payload.get("data")
        values["data"] = [data] if isinstance(data, str) else list(data) if isinstance(data, list) else []
        tokens = payload.get("tokens")
        names = {f.name for f in fields(TokenReport)}
        values["tokens"] = (
            TokenReport(**{k: tokens[k] for k in names})
            if isinstance(tokens, dict) and names <= tokens.keys()
            else None
        )
        return cls(**values, output=output)

    @classmethod
    def read(cls, leaf_dir: str | Path) -> DistillResult:
        """The facts of the run that made the leaf in ``leaf_dir`` (its ``leaf_run.json``)."""
        path = Path(leaf_dir) / RUN_FACTS
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise LeafHubError(
                f"{leaf_dir} has no {RUN_FACTS}: it was not written by leaf-hub distill"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LeafHubError(f"{path} is not readable JSON ({exc}); rerun the distillation") from None
        try:
            return cls.from_json(payload, output=Path(leaf_dir).parent)
        except LeafHubError as exc:
            raise LeafHubError(f"{path}: {exc}") from None

    @classmethod
    def find(cls, leaf_dir: str | Path) -> DistillResult | None:
        """:meth:`read`, or None for a leaf without a readable ``leaf_run.json`` (made elsewhere, or damaged:
        then a warning names the file). For readers to whom the run's facts are a bonus, not a requirement."""
        if not (Path(leaf_dir).expanduser() / RUN_FACTS).is_file():
            return None
        try:
            return cls.read(Path(leaf_dir).expanduser())
        except LeafHubError as exc:
            logger.warning("ignoring the run's facts: %s", exc)
            return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (ValidationScore, TokenReport)):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    return value


def split_validation(n: int, val_batches: int, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``val_batches`` batches (at most a tenth of the texts); returns (train_idx, val_idx)."""
    n_val = min(val_batches * batch_size, n // 10)
    if n - n_val < 1:
        raise LeafHubError(f"only {n} training texts: give more data (--data)")
    perm = shuffled_rows(np.random.default_rng(seed), n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def tokenize_for_leaf(leaf, texts: list[str], kinds: list[str], prompts: dict[str, str]) -> list[list[int]]:
    """Token ids of each text as the leaf sees it: the teacher's prompt for its kind, then the text."""
    tokenizer = leaf[0].tokenizer
    prefixed = [prompts.get(k, "") + t for t, k in zip(texts, kinds, strict=True)]
    out: list[list[int]] = []
    for start in range(0, len(prefixed), 10000):
        enc = tokenizer(prefixed[start : start + 10000], truncation=True, max_length=leaf.max_seq_length)
        out.extend(enc["input_ids"])
    return out


def distill(config: DistillConfig | None = None, /, **options: Any) -> DistillResult:
    """Distil ``config.teacher`` into a leaf on ``config.student``; returns the run's facts.

    Either pass a :class:`DistillConfig`, or its fields as keywords (``TrainConfig`` fields among them go
    into ``config.training``)::

        result = distill(teacher="sentence-transformers/all-mpnet-base-v2", output="runs/x", max_steps=120)
        result.validation.cosine, result.leaf_dir

    Options are checked, and the run folder looked at, before any model loads. Under ``accelerate launch``
    every process runs this; only the main process writes and gets the result (the others get None).
    """
    from accelerate import PartialState

    from leaf_hub import __version__
    from leaf_hub.data.specs import check_specs
    from leaf_hub.leaf import build_leaf
    from leaf_hub.models import load_model
    from leaf_hub.teachers import load_teacher
    from leaf_hub.training.data import prepare_train_data, read_texts
    from leaf_hub.training.trainer import has_saved_state, train
    from leaf_hub.training.warm_start import warm_start

    config = _config(config, options)
    config.validate()
    out = config.output
    if out.exists() and not out.is_dir():
        raise ConfigError("output", f"{{option}} {out} is a file; give a folder")
    if has_saved_state(out) and not config.resume:
        raise ConfigError(
            "resume",
            f"{out} holds the saved state of an earlier run; set {{option}} to continue it, or choose another output",
        )
    needs_tokenizer = check_specs(config.data)
    started = time.time()
    state = PartialState(cpu=_cpu_only(config.device))
    device = config.device or str(state.device)

    # The texts first (into the text store in the cache folder): a bad file or too few texts is refused
    # before any model loads.
    texts = read_texts(
        config,
        student_tokenizer=_student_tokenizer(config.student) if needs_tokenizer else None,
        state=state,
    )
    check_enough_texts(len(texts), config)

    teacher = load_teacher(
        config.teacher,
        device=device,
        api_key=config.api_key,
        api_model=config.api_model,
        query_prompt=config.query_prompt,
        document_prompt=config.document_prompt,
        batch_size=config.teacher_batch_size,
        backend=config.teacher_backend,
    )
    logger.info(
        "teacher %s: %d-d, normalized=%s, prompts=%s",
        teacher.name,
        teacher.dimension,
        teacher.normalized,
        teacher.prompts,
    )
    student = load_model(config.student, device=device)

    prompts = dict(teacher.prompts)
    leaf = build_leaf(student, teacher.dimension, teacher.normalized, prompts, teacher.max_seq_length)
    leaf.to(device)
    # Teacher cache -> token ids -> split, on disk in the cache folder (reused by reruns).
    prepared = prepare_train_data(config, texts=texts, teacher=teacher, leaf=leaf, state=state)
    data = prepared.data
    train_idx, val_idx = data.train_idx, data.val_idx
    recipe = config.training
    out.mkdir(parents=True, exist_ok=True)

    warm = None
    resuming = config.resume and has_saved_state(out)
    if config.warm_start and not resuming:
        warm = warm_start(leaf, data, rows=config.warm_start_texts, seed=recipe.seed)

    result = train(leaf, data, out, recipe, resume=config.resume, warm_start=warm, run_started=started)

    if not state.is_main_process:
        return None  # type: ignore[return-value]
    write_validation(out / "validation.jsonl", texts.records(val_idx))
    best = _best_record(out / "metrics.jsonl") or result.final.to_json()
    facts = DistillResult(
        teacher=teacher.name,
        teacher_fingerprint=teacher.fingerprint,
        student=config.student,
        data=list(config.data),
        data_stats=texts.stats,
        num_texts=len(texts),
        num_train=int(len(train_idx)),
        num_validation=int(len(val_idx)),
        steps=result.steps,
        epochs=result.epochs,
        batch_size=recipe.batch_size,
        hardware=_hardware(result.device, result.num_processes),
        wall_time_s=round(result.prior_run_time_s + time.time() - started, 1),  # all invocations
        train_time_s=result.train_time_s,
        validation=ValidationScore(l2=best["val_l2"], cosine=best["val_cosine"]),
        best_val_l2=result.best_val_l2,
        warm_start=result.warm_start,  # kept in the saved state: a resumed run still has it
        leaf_hub_version=__version__,
        tokens=prepared.token_report,
        output=out,
    )
    from leaf_hub.files import atomic_write_json

    atomic_write_json(out / "leaf" / RUN_FACTS, facts.to_json())
    atomic_write_json(
        out / "run.json", {**facts.to_json(), "options": config.options(), "train": result.to_json()}
    )
    return facts


MIN_TEXTS = 10  # a tenth is held out for validation: fewer than ten leaves nothing to validate on


def check_enough_texts(n: int, config: DistillConfig) -> None:
    """Refuse a run whose texts cannot fill both a training set and a validation set."""
    if n < MIN_TEXTS:
        raise ConfigError(
            "data",
            f"only {n} training text{'s' * (n != 1)} after dropping empty and duplicate ones; a tenth is held out "
            f"to validate, so distillation needs at least {MIN_TEXTS}: give more texts with {{option}}",
        )


def _student_tokenizer(student: str):
    """The student's tokenizer alone (for the bert-tokens set), without loading its weights."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(student)
    except (OSError, ValueError):
        from leaf_hub.models import load_model

        return load_model(student, device="cpu").tokenizer  # raises the one clear unknown-model error


def _config(config: DistillConfig | None, options: dict[str, Any]) -> DistillConfig:
    """A DistillConfig from either argument form of :func:`distill`."""
    if config is not None:
        if options:
            raise TypeError("distill() takes a DistillConfig or keyword options, not both")
        return config
    train_fields = {f.name for f in fields(TrainConfig)}
    training = {k: options.pop(k) for k in list(options) if k in train_fields}
    try:
        return DistillConfig(**options, training=TrainConfig(**training))
    except TypeError as exc:
        raise TypeError(
            f"distill(): {exc}; the options are DistillConfig's and TrainConfig's fields"
        ) from None


def _cpu_only(device: str | None) -> bool:
    """Whether Accelerate must run on the CPU. Under a launcher on a machine without an accelerator it has to
    be told, or every process believes it is the only one (DDP over gloo needs ``cpu=True``)."""
    import os

    import torch
    from accelerate.utils import parse_flag_from_env

    if device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = accelerator.is_available() if accelerator else torch.cuda.is_available()
    return "LOCAL_RANK" in os.environ and not has_accelerator


def _best_record(path: Path) -> dict | None:
    rows = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )
    rows = [r for r in rows if "val_l2" in r]
    return min(rows, key=lambda r: r["val_l2"]) if rows else None


def write_validation(path: Path, records) -> None:
    """The held-out texts as JSON lines (text, type, source): ``--alignment-texts`` of ``leaf-hub evaluate``."""
    from leaf_hub.files import atomic_write_bytes

    lines = "".join(json.dumps({"text": r.text, "type": r.kind, "source": r.source}) + "\n" for r in records)
    atomic_write_bytes(path, lines.encode())


def _hardware(device: str, processes: int) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"{processes} x {name}" if processes > 1 else name
    import os

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
