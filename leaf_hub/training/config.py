"""The options of a distillation run, with their defaults, in one place.

:class:`TrainConfig` is the training loop's recipe, :class:`DistillConfig` the whole run (models, data,
teacher cache, warm start) with a :class:`TrainConfig` inside. The command line is generated from these
dataclasses (each field's ``metadata`` carries its help text), so a default is written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from leaf_hub.errors import ConfigError
from leaf_hub.http import redact_url

DEFAULT_STUDENT = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_DATA = ("builtin", "bert-tokens")
MIXED_PRECISION = ("no", "bf16", "fp16")
# After the ridge warm start the backbone's rate rises over this many steps (bench/warm_start_schedules.py).
WARM_START_WARMUP = 100
CACHE_DTYPES = ("float16", "float32")
TEACHER_BACKENDS = ("torch", "onnx")


def _opt(help: str, **extra) -> dict:
    """Field metadata: the help line, and optionally ``choices``, ``flag`` (another name on the command
    line), ``cli=False`` (not a command-line option) or ``parse`` (a function from the flag's string)."""
    return {"help": help, **extra}


def parse_dropout(value: str) -> float | None:
    """``--dropout``: a probability, or ``model`` for the backbone's own."""
    if value == "model":
        return None
    try:
        p = float(value)
    except ValueError:
        raise ValueError(f"expected a probability or 'model', got {value!r}") from None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1) or 'model', got {value!r}")
    return p


@dataclass
class TrainConfig:
    """The training recipe: the paper's (AdamW, batch 32, 3 cycles of linear decay over 10 epochs each),
    but for the backbone's learning rate and the choices marked below.

    Per-group learning rates: the body (backbone) at twice the paper's 1e-4, the projection ("head") at the
    paper's 1e-4; both decay to a tenth. The ridge warm start already fits the head, and a large head rate
    undoes it (bench/warm_start_schedules.py: lr 3e-4 dropped the cosine from 0.682 to 0.641 in 50 steps),
    while the body learns faster at 2e-4: held-out cosine 0.755 against 0.745 after 30 minutes
    (bench/cosine_vs_time.py, 12k texts) and 0.705 against 0.700 when overfitting 4k texts for ~6 epochs
    (bench/overfitting.py). The paper's single rate: ``lr=1e-4, min_lr=1e-5, head_lr=None``.

    After a warm start the backbone's rate rises over its first 100 steps: at the peak from step 0, AdamW's
    first steps undid the fitted projection's head start (held-out cosine -0.017 for all-mpnet-base-v2 and
    -0.038 for an mxbai-shaped teacher within 10 steps; with the warm-up never more than -0.0034,
    bench/warm_start_schedules.py).
    """

    batch_size: int = field(default=32, metadata=_opt("texts per optimizer step and process (paper: 32)"))
    lr: float = field(default=2e-4, metadata=_opt("peak learning rate of the backbone", metavar="LR"))
    min_lr: float = field(
        default=2e-5,
        metadata=_opt("end of each cycle's linear decay, for lr (head_lr decays alike)", metavar="LR"),
    )
    head_lr: float | None = field(
        default=1e-4,
        metadata=_opt(
            "peak learning rate of the projection (the paper's 1e-4: a larger one undoes the warm start)",
            metavar="LR",
        ),
    )
    weight_decay: float = field(default=0.01, metadata=_opt("AdamW weight decay (paper: 0.01)"))
    beta1: float = field(default=0.9, metadata=_opt("AdamW beta1", cli=False))
    beta2: float = field(default=0.999, metadata=_opt("AdamW beta2", cli=False))
    cycles: int = field(default=3, metadata=_opt("learning-rate cycles, each a linear decay (paper: 3)"))
    epochs_per_cycle: int = field(default=10, metadata=_opt("epochs per cycle (paper: 10)"))
    warmup_steps: int = field(
        default=0, metadata=_opt("linear warm-up steps of every rate before the first decay")
    )
    backbone_warmup_steps: int | None = field(
        default=None,
        metadata=_opt(
            "linear warm-up steps of the backbone's rate only, the projection starting at its own (default: "
            f"{WARM_START_WARMUP} after a warm start, which the first steps at full rate undo; 0 without)"
        ),
    )
    max_steps: int | None = field(
        default=None, metadata=_opt("stop after this many optimizer steps (the cycles fit into them)")
    )
    max_minutes: float | None = field(
        default=None,
        metadata=_opt("stop after this many minutes of training (the cycles run on the clock)"),
    )
    eval_every: int = field(default=100, metadata=_opt("validate every N steps (and keep the best leaf)"))
    save_every: int = field(default=100, metadata=_opt("save resumable state every N steps"))
    gradient_accumulation_steps: int = field(default=1, metadata=_opt("batches per optimizer step"))
    mixed_precision: str = field(
        default="no", metadata=_opt("bf16 or fp16 autocast on GPUs", choices=MIXED_PRECISION)
    )
    # Length-grouped batches: on mixed texts random batches pad to their longest member (6.2x the real
    # tokens on the shared training mix, against 1.2x grouped).
    length_grouping: bool = field(
        default=True,
        metadata=_opt(
            "batches of similar token length",
            no_help="random batches (the paper's recipe) instead of length-grouped ones",
        ),
    )
    # Dropout of the backbone while training; None keeps the backbone's own (0.1 for BERT-likes). Off by
    # default: the target is a fixed vector, not a label to regularize towards, and dropout's masks cost a
    # third of a CPU forward pass. bench/dropout.py (12k mixed texts, warm start, 300 steps): held-out
    # cosine 0.712 in 275 s without it, 0.709 in 365 s with the backbone's 0.1.
    dropout: float | None = field(
        default=0.0,
        metadata=_opt(
            "dropout of the backbone while training (0: faster and learns as fast per step; "
            "'model' keeps the backbone's own)",
            parse=parse_dropout,
            metavar="P",
        ),
    )
    max_grad_norm: float | None = field(
        default=None, metadata=_opt("clip gradients to this norm (none: no clipping, as in the paper)")
    )
    dataloader_workers: int = field(
        default=0,
        metadata=_opt("DataLoader worker processes that pad batches (0: in the training process)"),
    )
    keep_checkpoints: int | None = field(
        default=None, metadata=_opt("keep only the last N epoch checkpoints")
    )
    seed: int = field(default=0, metadata=_opt("seed of the validation split, batches and warm start"))

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first option out of range."""
        for name in ("batch_size", "eval_every", "save_every", "gradient_accumulation_steps", "cycles",
                     "epochs_per_cycle"):  # fmt: skip
            _positive(self, name)
        for name in ("max_steps", "keep_checkpoints", "max_minutes"):
            if getattr(self, name) is not None:
                _positive(self, name)
        for name in ("warmup_steps", "backbone_warmup_steps", "dataloader_workers"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(name, f"{{option}} must not be negative, got {getattr(self, name)}")
        if self.max_grad_norm is not None:
            _positive(self, "max_grad_norm")
        if not 0 < self.min_lr <= self.lr:
            raise ConfigError("min_lr", f"need 0 < {{option}} <= lr, got {self.min_lr} and {self.lr}")
        if self.head_lr is not None and self.head_lr <= 0:
            raise ConfigError("head_lr", f"{{option}} must be positive, got {self.head_lr}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"{{option}} must be in [0, 1) or 'model', got {self.dropout}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                "mixed_precision",
                f"{{option}} is one of {', '.join(MIXED_PRECISION)}, not {self.mixed_precision!r}",
            )


@dataclass
class DistillConfig:
    """Everything one distillation run needs: the two models, the texts, the teacher cache, the warm start
    and the training recipe. ``teacher`` and ``output`` are required; the rest has defaults."""

    teacher: str = field(
        metadata=_opt("Hub id, local folder, or http(s) URL of an OpenAI-style embeddings API")
    )
    output: Path = field(
        metadata=_opt("run folder: the leaf, checkpoints, teacher cache and records land here")
    )
    student: str = field(default=DEFAULT_STUDENT, metadata=_opt("backbone of the leaf"))
    data: list[str] = field(
        default_factory=lambda: list(DEFAULT_DATA),
        metadata=_opt(
            "training texts, repeatable: a file (.jsonl/.json/.txt/.parquet/.csv/.tsv, .gz too), hf:DATASET, "
            "bert-tokens, words, words:PATH, builtin, preset:quickstart (2,000 texts, no download), "
            "preset:leaf-paper or preset:leaf-paper-full, each optionally followed by "
            "'::key=value,...' (column=, type_column=, kind=query|document, limit=N rows from this source, "
            "config=, split=)",
            flag="data",
        ),
    )
    max_texts: int | None = field(
        default=None, metadata=_opt("use at most this many texts after de-duplication (a random sample)")
    )
    val_batches: int = field(
        default=128, metadata=_opt("held-out validation batches, at most a tenth of the texts (paper: 128)")
    )
    api_model: str | None = field(
        default=None, metadata=_opt("model name for an HTTP teacher (env LEAF_HUB_TEACHER_MODEL)")
    )
    # Never written anywhere: run.json and the card leave it out.
    api_key: str | None = field(
        default=None,
        metadata=_opt(
            "key for an HTTP teacher (env LEAF_HUB_TEACHER_API_KEY or OPENAI_API_KEY)", secret=True
        ),
    )
    query_prompt: str | None = field(
        default=None, metadata=_opt("override the teacher's query prompt (used for teacher and leaf alike)")
    )
    document_prompt: str | None = field(default=None, metadata=_opt("override the teacher's document prompt"))
    device: str | None = field(
        default=None, metadata=_opt("device for the models (default: Accelerate's choice)")
    )
    cache: Path | None = field(
        default=None,
        metadata=_opt("teacher-embedding cache folder, to share one (default OUTPUT/teacher-cache)"),
    )
    cache_dtype: str = field(
        default="float16",
        metadata=_opt(
            "storage of the teacher vectors (float16: half the disk, cosine >= 0.999)", choices=CACHE_DTYPES
        ),
    )
    teacher_batch_size: int = field(default=64, metadata=_opt("texts per teacher call (or API request)"))
    cache_shard_size: int = field(
        default=2048,
        metadata=_opt("texts per cache shard: the unit of resuming and of the split across processes"),
    )
    teacher_backend: str = field(
        default="torch",
        metadata=_opt(
            "run a local teacher with PyTorch or ONNX Runtime (faster on CPU; checked against PyTorch first)",
            choices=TEACHER_BACKENDS,
        ),
    )
    warm_start: bool = field(
        default=True,
        metadata=_opt(
            "fit the projection by float64 ridge regression before training",
            no_help="start from a random projection (the paper's recipe) instead of the ridge warm start",
        ),
    )
    warm_start_texts: int = field(default=20000, metadata=_opt("texts used to fit the warm-start projection"))
    resume: bool = field(default=False, metadata=_opt("continue an interrupted run in the output folder"))
    training: TrainConfig = field(
        default_factory=TrainConfig, metadata=_opt("the training recipe", cli=False)
    )

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.cache is not None:
            self.cache = Path(self.cache)
        if isinstance(self.data, str):
            self.data = [self.data]
        self.data = list(self.data or DEFAULT_DATA)

    @property
    def cache_dir(self) -> Path:
        return self.cache if self.cache is not None else self.output / "teacher-cache"

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first option out of range; checks nothing on disk."""
        if not str(self.teacher or "").strip():
            raise ConfigError("teacher", "{option} is required: a Hub id, a model folder or an API URL")
        for name in ("teacher_batch_size", "cache_shard_size", "warm_start_texts"):
            _positive(self, name)
        if self.max_texts is not None:
            _positive(self, "max_texts")
        if self.val_batches <= 0:
            raise ConfigError(
                "val_batches",
                f"{{option}} must be at least 1 (the held-out texts pick the best leaf), got {self.val_batches}",
            )
        if self.cache_dtype not in CACHE_DTYPES:
            raise ConfigError("cache_dtype", f"{{option}} is float16 or float32, not {self.cache_dtype!r}")
        if self.teacher_backend not in TEACHER_BACKENDS:
            raise ConfigError("teacher_backend", f"{{option}} is torch or onnx, not {self.teacher_backend!r}")
        self.training.validate()

    def options(self) -> dict:
        """The options as JSON-ready values for run.json, without secrets."""
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                continue
            if isinstance(value, TrainConfig):
                out[f.name] = {g.name: getattr(value, g.name) for g in fields(value)}
            elif f.name == "teacher" and str(value).startswith(("http://", "https://")):
                out[f.name] = redact_url(str(value))  # a key may sit in the URL
            else:
                out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _positive(config, name: str) -> None:
    value = getattr(config, name)
    if value is None or value <= 0:
        what = "a positive integer" if isinstance(value, int) else "positive"
        raise ConfigError(name, f"{{option}} must be {what}, got {value}")
