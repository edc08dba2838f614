"""The computations behind the Space: score documents for a query under the teacher, the leaf and the pair.

A leaf's embeddings live in its teacher's vector space, so three scorings of the same query against the
same documents are comparable: the teacher alone, the leaf alone, and the asymmetric pair (leaf queries,
teacher documents: how a leaf is used against an index the teacher built). This module embeds once,
then rescores under any Matryoshka truncation and int8 / binary quantization without embedding again, and
measures how far the rankings agree. It is plain Python over loaded models, so the Gradio UI
(:mod:`leaf_hub.space.app`) stays thin and these functions are tested directly.

Every score is ``model.similarity(a, b)`` of the (possibly truncated and quantized) embeddings; the
teacher's similarity function scores the asymmetric pair, because the pair is searched in its space.
Truncation and quantization are :mod:`leaf_hub.evaluation.quantization`'s, the same path the evaluation
report's MRL / quantization table takes, so the two agree.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.quantization import index_view, int8_ranges, transform

logger = logging.getLogger(__name__)

# Bounds keep one request at a few seconds of CPU even with the full-size teacher.
MAX_DOCUMENTS = 20
MAX_CHARS = 2000
# "none" keeps float32 embeddings; int8 and binary use sentence-transformers' quantize_embeddings.
PRECISIONS = ("none", "int8", "binary")
DECIMALS = 4
MODELS = ("teacher", "leaf", "asymmetric")
TABLE_HEADERS = [
    "#",
    "document",
    "teacher",
    "teacher rank",
    "leaf",
    "leaf rank",
    "asymmetric",
    "asymmetric rank",
]
_PREVIEW_CHARS = 90

# Ready examples: (query, documents one per line). They double as int8 calibration texts.
EXAMPLES: list[tuple[str, str]] = [
    (
        "How do vaccines train the immune system?",
        "Vaccines expose the body to a harmless piece of a pathogen so that memory cells form.\n"
        "The immune system produces antibodies after meeting an antigen for the first time.\n"
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.\n"
        "Herd immunity protects people who cannot be vaccinated themselves.\n"
        "The stock market fell sharply after the central bank raised interest rates.",
    ),
    (
        "best way to store fresh basil",
        "Keep basil stems in a glass of water on the counter, like a bouquet of flowers.\n"
        "Refrigerating basil makes the leaves turn black within a day or two.\n"
        "Basil pesto is made from basil, pine nuts, garlic, parmesan and olive oil.\n"
        "A solid-state drive stores data in flash memory without moving parts.\n"
        "You can freeze chopped basil in olive oil in an ice cube tray.",
    ),
    (
        "Which library should I use to search embeddings quickly?",
        "FAISS is a library for efficient similarity search and clustering of dense vectors.\n"
        "Binary quantization stores one bit per dimension and compares vectors with Hamming distance.\n"
        "The library opens at nine in the morning and closes at six in the evening.\n"
        "Approximate nearest neighbour indexes trade a little recall for a lot of speed.\n"
        "Matryoshka embeddings can be truncated to fewer dimensions with a small loss in quality.",
    ),
    (
        "symptoms of dehydration",
        "Thirst, dark urine, dizziness and fatigue are common signs of dehydration.\n"
        "Drinking water regularly during exercise helps prevent heat exhaustion.\n"
        "The Sahara is the largest hot desert in the world.\n"
        "Severe dehydration can cause confusion and a rapid heartbeat and needs medical care.",
    ),
]

PAIR_EXAMPLES: list[tuple[str, str]] = [
    ("A man is playing a guitar on stage.", "A musician performs a song with his guitar."),
    ("The cat sleeps on the warm windowsill.", "Interest rates rose for the third time this year."),
    ("How old is the universe?", "The universe is about 13.8 billion years old."),
]


# ----------------------------------------------------------------------------------------------- inputs
def check_text(text: str | None, what: str) -> str:
    """Return ``text`` stripped, or raise when it is empty or longer than :data:`MAX_CHARS`."""
    text = (text or "").strip()
    if not text:
        raise LeafHubError(f"the {what} is empty; type some text")
    if len(text) > MAX_CHARS:
        raise LeafHubError(f"the {what} has {len(text)} characters; shorten it to at most {MAX_CHARS}")
    return text


def parse_documents(documents_text: str | None) -> list[str]:
    """Split the documents box into one document per non-blank line, within the bounds."""
    documents = [line.strip() for line in (documents_text or "").splitlines() if line.strip()]
    if not documents:
        raise LeafHubError("no documents: type at least one document, one per line")
    if len(documents) > MAX_DOCUMENTS:
        raise LeafHubError(
            f"{len(documents)} documents given; at most {MAX_DOCUMENTS} are compared, remove some lines"
        )
    for i, doc in enumerate(documents, 1):
        if len(doc) > MAX_CHARS:
            raise LeafHubError(
                f"document {i} has {len(doc)} characters; shorten it to at most {MAX_CHARS} "
                "(each line is one document)"
            )
    return documents


def check_models(teacher, leaf) -> int:
    """The shared embedding dimension; raise when the leaf does not live in the teacher's space."""
    d_teacher, d_leaf = teacher.get_embedding_dimension(), leaf.get_embedding_dimension()
    if d_teacher != d_leaf:
        raise LeafHubError(
            f"the leaf outputs {d_leaf}-d embeddings but the teacher {d_teacher}-d: it is not a leaf of "
            "this teacher; give the teacher the leaf was distilled from (see leaf_run.json)"
        )
    return int(d_teacher)


def check_view(dimensions: int | float | None, precision: str | None, full_dim: int) -> tuple[int, str]:
    """Validate the Matryoshka dimension (``None``/0 means all) and the precision."""
    dim = full_dim if not dimensions else int(dimensions)
    if not 1 <= dim <= full_dim:
        raise LeafHubError(f"dimensions must be between 1 and {full_dim}, got {dimensions}")
    precision = precision or "none"
    if precision not in PRECISIONS:
        raise LeafHubError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return dim, precision


# ----------------------------------------------------------------------------------------- embeddings
@dataclass
class Embedded:
    """Float embeddings of one query and its documents under both models, with the time each took."""

    query: str
    documents: list[str]
    query_teacher: np.ndarray  # (1, d)
    query_leaf: np.ndarray  # (1, d)
    docs_teacher: np.ndarray  # (n, d)
    docs_leaf: np.ndarray  # (n, d)
    seconds: dict[str, float] = field(default_factory=dict)  # teacher, leaf: query + documents


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args)
    return np.asarray(out, dtype=np.float32), time.perf_counter() - start


def embed_comparison(teacher, leaf, query: str, documents: Sequence[str]) -> Embedded:
    """Embed the query (with each model's query prompt) and the documents once under both models."""
    query = check_text(query, "query")
    documents = list(documents)
    q_t, s_qt = _timed(teacher.encode_query, [query])
    d_t, s_dt = _timed(teacher.encode_document, documents)
    q_l, s_ql = _timed(leaf.encode_query, [query])
    d_l, s_dl = _timed(leaf.encode_document, documents)
    return Embedded(query, documents, q_t, q_l, d_t, d_l, {"teacher": s_qt + s_dt, "leaf": s_ql + s_dl})


def similarity(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``model.similarity(a, b)`` as a float64 numpy matrix."""
    return np.asarray(model.similarity(a, b).detach().cpu().numpy(), dtype=np.float64)


# ---------------------------------------------------------------------------------------- agreement
def ranks(scores: Sequence[float]) -> list[int]:
    """1-based rank of each score, highest first; ties keep input order (a stable sort)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    out = [0] * len(order)
    for rank, index in enumerate(order, 1):
        out[int(index)] = rank
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two score lists; ``None`` when undefined (fewer than 2 items or all tied).

    Written out (O(n^2) over at most :data:`MAX_DOCUMENTS`) so the Space needs no scipy.
    """
    n = len(a)
    if n != len(b):
        raise ValueError("score lists differ in length")
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int) -> float:
    """Fraction of the top-k documents under ``a`` that are also in the top-k under ``b``."""
    k = max(1, min(k, len(a)))
    top_a = set(np.argsort(-np.asarray(a), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-np.asarray(b), kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def warm_up(teacher, leaf) -> dict[str, float]:
    """Run each model's query and document paths once, so the first visitor's timings are not the warm-up.

    The first encode of a model pays one-time costs (allocator growth, kernel selection, lazy imports:
    measured here the first visitor saw the leaf 1.2x faster than the teacher, the next one 6.1x). Returns
    the seconds each model took, for the log.
    """
    query, documents = EXAMPLES[0][0], EXAMPLES[0][1].splitlines()
    return {
        name: sum(
            _timed(fn, texts)[1] for fn, texts in ((m.encode_query, [query]), (m.encode_document, documents))
        )
        for name, m in (("teacher", teacher), ("leaf", leaf))
    }


def display_name(name: str) -> str:
    """A model as the page names it: its Hub id, or a local folder's own name (never the path to it)."""
    path = Path(str(name)).expanduser()
    text = str(name)
    is_local = path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1
    return f"{path.name or text} (local folder)" if is_local else text


# Why the asymmetric column reads lower than the other two: shown under the score table.
ASYMMETRIC_NOTE = (
    "_Asymmetric cosines (leaf query against teacher documents) sit on another scale than the teacher's and "
    "the leaf's own: the leaf's query vector is close to the teacher's but not the same, so every score "
    "drops by a similar amount. Compare the asymmetric **ranks** with the teacher's, not the raw values._"
)


# ------------------------------------------------------------------------------------------- scoring
@dataclass
class ScoreTable:
    """The side-by-side comparison: rounded scores and ranks per document, plus rank agreement."""

    headers: list[str]
    rows: list[list[Any]]
    scores: dict[str, list[float]]  # unrounded, per model, in document order
    agreement: dict[str, dict[str, float | None]]  # "leaf", "asymmetric" vs teacher
    seconds: dict[str, float]
    dim: int
    precision: str
    top_k: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: the table as headers + data (what ``pandas.DataFrame(data, columns=headers)``
        takes), plus the agreement and timings."""
        return {
            "headers": self.headers,
            "data": self.rows,
            "agreement": self.agreement,
            "seconds": self.seconds,
            "dimensions": self.dim,
            "precision": self.precision,
        }


def preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def score(
    embedded: Embedded,
    teacher,
    leaf,
    dimensions: int | None = None,
    precision: str = "none",
    calibration: np.ndarray | None = None,
    top_k: int = 3,
) -> ScoreTable:
    """Score the embedded documents for teacher, leaf and asymmetric under a truncation and precision.

    ``calibration``: extra embeddings of the shared space (the teacher's of the examples) that, with each
    index's documents, set its int8 buckets (an index is calibrated on its corpus; the query is quantized
    with the same buckets): :func:`leaf_hub.evaluation.quantization.index_view`, as the report does.
    """
    full_dim = embedded.docs_teacher.shape[1]
    dim, precision = check_view(dimensions, precision, full_dim)
    extra = (calibration,) if calibration is not None else ()

    def scores_of(model, query: np.ndarray, docs: np.ndarray) -> list[float]:
        # Each system searches its own index (int8 buckets from that index's documents).
        q, d = index_view(query, docs, dim, precision, calibration=extra)
        return similarity(model, q, d)[0].tolist()

    scores = {
        "teacher": scores_of(teacher, embedded.query_teacher, embedded.docs_teacher),
        "leaf": scores_of(leaf, embedded.query_leaf, embedded.docs_leaf),
        # The pair searches the teacher's index: teacher's similarity function, leaf query.
        "asymmetric": scores_of(teacher, embedded.query_leaf, embedded.docs_teacher),
    }
    rank = {name: ranks(values) for name, values in scores.items()}
    rows = []
    for i, doc in enumerate(embedded.documents):
        row: list[Any] = [i + 1, preview(doc)]
        for name in MODELS:
            row += [round(scores[name][i], DECIMALS), rank[name][i]]
        rows.append(row)
    agreement = {
        name: {
            "kendall_tau": kendall_tau(scores["teacher"], scores[name]),
            f"top{min(top_k, len(embedded.documents))}_overlap": top_k_overlap(
                scores["teacher"], scores[name], top_k
            ),
            "same_top1": float(rank["teacher"].index(1) == rank[name].index(1)),
        }
        for name in ("leaf", "asymmetric")
    }
    return ScoreTable(
        list(TABLE_HEADERS), rows, scores, agreement, dict(embedded.seconds), dim, precision, top_k
    )


def compare(
    teacher,
    leaf,
    query: str,
    documents_text: str,
    dimensions: int | None = None,
    precision: str = "none",
    calibration: np.ndarray | None = None,
) -> ScoreTable:
    """Validate, embed and score in one call (what the ``compare`` API endpoint runs)."""
    query = check_text(query, "query")
    documents = parse_documents(documents_text)
    check_view(dimensions, precision, check_models(teacher, leaf))
    embedded = embed_comparison(teacher, leaf, query, documents)
    return score(embedded, teacher, leaf, dimensions, precision, calibration)


def agreement_markdown(table: ScoreTable) -> str:
    """Rank agreement with the teacher and time per model, as a small markdown table."""
    k_key = next(k for k in table.agreement["leaf"] if k.endswith("_overlap"))
    k = k_key[3:].split("_")[0]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"**Rank agreement with the teacher** ({table.dim} dimensions, precision {table.precision})",
        "",
        f"| vs teacher | Kendall τ | top-{k} overlap | same top-1 |",
        "|---|---|---|---|",
    ]
    for name in ("leaf", "asymmetric"):
        a = table.agreement[name]
        same = "yes" if a["same_top1"] else "no"
        lines.append(f"| {name} | {fmt(a['kendall_tau'])} | {fmt(a[k_key])} | {same} |")
    t, lf = table.seconds.get("teacher", 0.0), table.seconds.get("leaf", 0.0)
    speedup = f" — leaf {t / lf:.1f}× faster" if lf > 0 else ""
    lines += [
        "",
        f"**Time to embed** query + documents: teacher {t * 1000:.0f} ms, leaf {lf * 1000:.0f} ms{speedup}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- sentence pair
def pair_similarity(
    teacher,
    leaf,
    sentence1: str,
    sentence2: str,
    dimensions: int | None = None,
    precision: str = "none",
    calibration: np.ndarray | None = None,
) -> dict[str, float]:
    """Similarity of two sentences under teacher, leaf, and across (leaf for 1, teacher for 2)."""
    s1, s2 = check_text(sentence1, "first sentence"), check_text(sentence2, "second sentence")
    dim, precision = check_view(dimensions, precision, check_models(teacher, leaf))
    t = np.asarray(teacher.encode([s1, s2]), dtype=np.float32)
    lf = np.asarray(leaf.encode([s1, s2]), dtype=np.float32)
    ranges = None
    if precision == "int8":
        parts = [t] + ([calibration] if calibration is not None else [])
        ranges = int8_ranges(*parts)[:, :dim]
    t, lf = transform(t, dim, precision, ranges), transform(lf, dim, precision, ranges)
    return {
        "teacher": float(similarity(teacher, t[:1], t[1:])[0, 0]),
        "leaf": float(similarity(leaf, lf[:1], lf[1:])[0, 0]),
        "leaf ↔ teacher": float(similarity(teacher, lf[:1], t[1:])[0, 0]),
    }


def calibration_embeddings(teacher) -> np.ndarray:
    """Teacher embeddings of the example texts: int8 buckets beyond the few texts of one request."""
    texts = [q for q, _ in EXAMPLES] + [d for _, docs in EXAMPLES for d in docs.splitlines()]
    texts += [s for pair in PAIR_EXAMPLES for s in pair]
    return np.asarray(teacher.encode_document(texts), dtype=np.float32)


# ---------------------------------------------------------------------------------------- card facts
REPORT_FILES = ("eval_report.json", "bench_report.json", "leaf_run.json")


def load_reports(leaf_source: str | Path, report_dir: str | Path | None = None) -> dict[str, Any]:
    """Read ``eval_report.json``, ``bench_report.json`` and ``leaf_run.json`` when present.

    Looks in ``report_dir``, else in the leaf folder, else (a Hub id) in the leaf's Hub repo. A missing
    file is ``None``; an unreadable one is ``None`` plus a note, so a broken report never stops the app.
    """
    reports: dict[str, Any] = {name: None for name in REPORT_FILES}
    notes: list[str] = []
    folder = Path(report_dir) if report_dir else Path(str(leaf_source)).expanduser()
    for name in REPORT_FILES:
        path: Path | None = folder / name if folder.is_dir() else None
        if path is None or not path.is_file():
            path = _hub_file(str(leaf_source), name) if report_dir is None and not folder.is_dir() else None
        if path is None or not path.is_file():
            continue
        try:
            reports[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            notes.append(f"{name} could not be read ({exc}); rewrite it with leaf-hub")
    reports["notes"] = notes
    return reports


def _hub_file(repo_id: str, filename: str) -> Path | None:
    """A file of a Hub model repo (downloaded or cached), or None when the repo or file is not there."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename))
    except Exception as exc:  # offline, not found, gated: the facts tab simply shows less
        logger.debug("no %s for %s: %s", filename, repo_id, exc)
        return None


def parameter_count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def card_facts(
    teacher, leaf, reports: dict[str, Any], teacher_name: str = "teacher", leaf_name: str = "leaf"
) -> dict[str, Any]:
    """Size, dimensions, sequence length, training and speed facts of teacher and leaf."""
    p_t, p_l = parameter_count(teacher), parameter_count(leaf)
    facts: dict[str, Any] = {
        "teacher": teacher_name,
        "leaf": leaf_name,
        "teacher_params": p_t,
        "leaf_params": p_l,
        "size_ratio": p_t / p_l if p_l else None,
        "dimensions": teacher.get_embedding_dimension(),
        "teacher_max_seq_length": teacher.max_seq_length,
        "leaf_max_seq_length": leaf.max_seq_length,
        "speedups": {},
        "run": reports.get("leaf_run.json") or None,
        "notes": list(reports.get("notes") or []),
    }
    bench = reports.get("bench_report.json") or {}
    summary = bench.get("summary") if isinstance(bench, dict) else None
    if isinstance(summary, dict):
        for backend, values in summary.items():
            if isinstance(values, dict):
                facts["speedups"][backend] = {
                    k: values[k] for k in ("documents_speedup", "queries_speedup") if k in values
                }
    return facts


def facts_markdown(facts: dict[str, Any]) -> str:
    lines = [
        "| | teacher | leaf |",
        "|---|---|---|",
        f"| model | `{facts['teacher']}` | `{facts['leaf']}` |",
        f"| parameters | {human_count(facts['teacher_params'])} | {human_count(facts['leaf_params'])} |",
        f"| embedding dimensions | {facts['dimensions']} | {facts['dimensions']} (teacher's space) |",
        f"| max sequence length | {facts['teacher_max_seq_length']} | {facts['leaf_max_seq_length']} |",
    ]
    if facts.get("size_ratio"):
        lines.append(f"\nThe leaf is **{facts['size_ratio']:.1f}× smaller** than its teacher.")
    if facts["speedups"]:
        lines += ["", "**Measured speed-up of the leaf** (from `bench_report.json`)", ""]
        lines += ["| backend | documents | queries |", "|---|---|---|"]
        for backend, s in facts["speedups"].items():
            docs, queries = s.get("documents_speedup"), s.get("queries_speedup")
            lines.append(
                f"| {backend} | {f'{docs:.1f}×' if docs else 'n/a'} | {f'{queries:.1f}×' if queries else 'n/a'} |"
            )
    else:
        lines += ["", "_No `bench_report.json` next to the leaf: run `leaf-hub bench` for speed-ups._"]
    run = facts.get("run")
    if isinstance(run, dict):
        validation = run.get("validation") or {}
        lines += [
            "",
            "**Training** (from `leaf_run.json`): "
            + ", ".join(
                f"{k} {run[k]}" for k in ("student", "num_texts", "steps", "epochs", "hardware") if k in run
            )
            + (f"; validation cosine {validation['cosine']:.4f}" if "cosine" in validation else ""),
        ]
    for note in facts.get("notes") or []:
        lines += ["", f"_{note}_"]
    return "\n".join(lines)


def eval_rows(report: dict[str, Any] | None) -> tuple[list[str], list[list[Any]]]:
    """``eval_report.json`` results as rows (task, metric, teacher, leaf, asymmetric)."""
    headers = ["task", "metric", *MODELS]
    results = (report or {}).get("results") if isinstance(report, dict) else None
    if not isinstance(results, dict):
        return headers, []
    keys: dict[tuple[str, str], None] = {}
    for model in MODELS:
        for task, metrics in (results.get(model) or {}).items():
            for metric in metrics or {}:
                keys[(task, metric)] = None
    rows = []
    for task, metric in keys:
        row: list[Any] = [task, metric]
        for model in MODELS:
            value = ((results.get(model) or {}).get(task) or {}).get(metric)
            row.append(round(float(value), DECIMALS) if isinstance(value, (int, float)) else None)
        rows.append(row)
    return headers, rows


def mrl_rows(report: dict[str, Any] | None) -> tuple[list[str], list[list[Any]]]:
    """``eval_report.json`` "mrl_quant" as rows (model, task, then one column per setting)."""
    block = (report or {}).get("mrl_quant") if isinstance(report, dict) else None
    if not isinstance(block, dict):
        return ["model", "task"], []
    settings: dict[str, None] = {}
    for tasks in block.values():
        for values in (tasks or {}).values():
            settings.update(dict.fromkeys(values or {}))
    # dim=64 < dim=128 < ... numerically, then the precisions from fine to coarse, then anything else.
    precision_order = {"float32": 0, "int8": 1, "uint8": 2, "binary": 3, "ubinary": 4}

    def order(s: str) -> tuple[int, int, str]:
        if s.startswith("dim=") and s[4:].isdigit():
            return (0, int(s[4:]), s)
        return (1, precision_order.get(s, len(precision_order)), s)

    ordered = sorted(settings, key=order)
    rows = []
    for model, tasks in block.items():
        for task, values in (tasks or {}).items():
            rows.append(
                [model, task]
                + [
                    round(float(v), DECIMALS)
                    if isinstance(v := (values or {}).get(s), (int, float))
                    else None
                    for s in ordered
                ]
            )
    return ["model", "task", *ordered], rows
