"""Evaluate a leaf against its teacher, side by side with the asymmetric pair: :func:`evaluate`.

Three systems are scored on every task: the teacher, the leaf (standard mode: the leaf encodes queries and
documents) and the asymmetric pair (the leaf encodes queries, the teacher documents: the deployment LEAF
is made for). Tasks:

- retrieval (``retrieval``, repeatable): nDCG@10 and recall@100 on BEIR collections (:mod:`.retrieval`);
- STS (``sts``, repeatable): Spearman of cosine similarity (:mod:`.sts`);
- alignment, label-free: mean L2 / cosine between leaf and teacher embeddings of held-out texts, and the
  overlap of the leaf's top-10 with the teacher's top-10 on every collection (:mod:`.alignment`);
- MRL and quantization: nDCG@10 with embeddings truncated to 64..full dimensions and quantized to int8 and
  binary, for all three systems (:mod:`.quantization`, the path the Space takes too);
- with ``run=RUN_DIR``: every checkpoint of a distillation run, validation L2 against nDCG@10.

Models run in PyTorch, or (``leaf_backend`` / ``teacher_backend`` ``onnx`` or ``onnx-int8``) as their ONNX
export on ONNX Runtime, so the scores are those of what is served: int8 weights move the embeddings.

Encoding is the only expensive step, so each text set is encoded once per model and cached on disk
(:mod:`.embedding_store`): the three systems need two corpus encodings and two query encodings, and MRL /
quantization variants reuse them. The result is an :class:`~leaf_hub.evaluation.report.EvaluationReport`,
written as JSON, Markdown and PNGs by :mod:`.report`::

    from leaf_hub import evaluate

    report = evaluate(leaf="runs/quickstart/leaf", retrieval=["cisi=data/cisi"], sts=["stsb"])
    print(report.score("asymmetric", "cisi", "ndcg@10"))
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaf_hub.errors import ConfigError, LeafHubError
from leaf_hub.evaluation.config import EvaluateConfig
from leaf_hub.evaluation.report import (
    MODES,
    AlignmentResult,
    AlignmentScores,
    CheckpointResult,
    EvaluationMeta,
    EvaluationReport,
    MrlQuantScores,
    RetrievalResult,
    RetrievalScores,
    StsResult,
    StsScores,
    Timing,
)
from leaf_hub.files import read_json
from leaf_hub.models import BACKENDS
from leaf_hub.training.distill import DistillResult

logger = logging.getLogger(__name__)

__all__ = ["MODES", "EvaluateConfig", "EvaluationReport", "evaluate"]

PROTOCOL = {
    "retrieval": "exact cosine search; nDCG@10 with graded gains (trec_eval ndcg_cut), recall@100; "
    "judged queries only; document = title + ' ' + text",
    "sts": "Spearman of cosine similarity, raw (not x100); no prompt",
    "int8": "quantize_embeddings int8, ranges calibrated on the index's document embeddings; codes scored as "
    "their buckets' centres, cosine (leaf_hub.evaluation.quantization, as the Space)",
    "binary": "quantize_embeddings binary sign bits; Hamming distance",
    "asymmetric": "leaf encodes queries (and STS sentence 1), teacher documents (sentence 2)",
}


# ------------------------------------------------------------------------------------------ helpers


def default_dims(full: int) -> list[int]:
    dims, d = [], 64
    while d < full:
        dims.append(d)
        d *= 2
    return [*dims, full]


def parse_dims(dims: str | list[int] | None, full: int) -> list[int]:
    """Matryoshka dimensions (``"64,128"`` or a list) up to ``full``, which is always included."""
    if not dims:
        return default_dims(full)
    values = EvaluateConfig._parse_dims(dims) or []
    too_big = [d for d in values if d > full]
    if too_big:
        raise ConfigError(
            "dims", f"{{option}} {too_big} exceed the embedding dimension {full}; use values up to {full}"
        )
    return sorted({*values, full})


def load_encoder(name: str, backend: str, device: str | None = None):
    """The model ``name`` as ``backend`` runs it: a SentenceTransformer, or an OnnxEncoder of its export."""
    if backend not in BACKENDS:
        raise LeafHubError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "torch":
        from leaf_hub.models import load_model

        return load_model(name, device=device)
    from leaf_hub.export.onnx import ensure_onnx
    from leaf_hub.export.onnx_encoder import OnnxEncoder

    quantized = backend == "onnx-int8"
    return OnnxEncoder(
        ensure_onnx(name, quantized=quantized), quantized=quantized, providers=onnx_providers(device)
    )


def onnx_providers(device: str | None) -> list[str]:
    """ONNX Runtime providers for a torch-style ``--device``: CUDA when asked for and installed, else CPU."""
    if device is None or not str(device).startswith("cuda"):
        return ["CPUExecutionProvider"]
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    logger.warning(
        "--device %s: this onnxruntime has no CUDA provider, so the ONNX graphs run on the CPU; "
        "install onnxruntime-gpu to run them on the GPU",
        device,
    )
    return ["CPUExecutionProvider"]


def check_dimensions(teacher, leaf, teacher_name: str, leaf_name: str) -> int:
    """The shared dimension; an error that explains a leaf/teacher mismatch."""
    d_teacher, d_leaf = teacher.get_embedding_dimension(), leaf.get_embedding_dimension()
    if d_teacher != d_leaf:
        raise LeafHubError(
            f"leaf {leaf_name!r} outputs {d_leaf}-d embeddings but teacher {teacher_name!r} outputs "
            f"{d_teacher}-d: the leaf was not distilled from this teacher, so their vectors cannot be compared; "
            "give the teacher the leaf was distilled from (its leaf_run.json names it)"
        )
    return int(d_teacher)


@dataclass
class Encoder:
    role: str
    name: str
    model: Any


class Evaluator:
    """Scores the teacher, the leaf and the asymmetric pair on shared, cached embeddings."""

    def __init__(self, teacher: Encoder, leaf: Encoder, store, batch_size: int = 32) -> None:
        self.encoders = {"teacher": teacher, "leaf": leaf}
        self.store = store
        self.batch_size = batch_size

    def embed(self, role: str, texts: list[str], task: str, what: str):
        enc = self.encoders[role]
        return self.store.encode(
            enc.model, texts, task, batch_size=self.batch_size, desc=f"{role}: {what}", model_name=enc.name
        )

    def retrieval_embeddings(self, ds) -> tuple[dict, dict]:
        queries = {r: self.embed(r, ds.queries, "query", f"{ds.name} queries") for r in ("teacher", "leaf")}
        docs = {r: self.embed(r, ds.docs, "document", f"{ds.name} documents") for r in ("teacher", "leaf")}
        return queries, docs

    def retrieval(self, ds, dims: list[int] | None) -> RetrievalResult:
        """Every mode's scores on one collection (and the MRL / quantization variants unless ``dims`` is None)."""
        from leaf_hub.evaluation.retrieval import evaluate_embeddings

        queries, docs = self.retrieval_embeddings(ds)
        result = RetrievalResult(ds.name, source=ds.source, stats=dict(ds.stats))
        for mode, (qr, dr) in MODES.items():
            result.scores[mode] = RetrievalScores.from_json(evaluate_embeddings(ds, queries[qr], docs[dr]))
            if dims is not None:
                result.mrl_quant[mode] = MrlQuantScores.from_json(
                    mrl_quant_variants(ds, queries[qr], docs[dr], dims)
                )
        for mode, value in self.overlaps(queries, docs).items():
            result.scores[mode].top10_overlap = value
        return result

    def overlaps(self, queries: dict, docs: dict, k: int = 10) -> dict[str, float]:
        """Share of the teacher's top-k also in the leaf's (standard) and the pair's (asymmetric) top-k."""
        from leaf_hub.evaluation.retrieval import topk_overlap

        tq, td, lq, ld = queries["teacher"], docs["teacher"], queries["leaf"], docs["leaf"]
        return {"leaf": topk_overlap(lq, ld, tq, td, k), "asymmetric": topk_overlap(lq, td, tq, td, k)}

    def overlap_only(self, ds) -> dict[str, float]:
        queries, docs = self.retrieval_embeddings(ds)
        return self.overlaps(queries, docs)

    def sts(self, ds) -> StsResult:
        from leaf_hub.evaluation.sts import evaluate_sts

        sentences, _, _ = ds.unique_sentences()
        emb = {r: self.embed(r, sentences, "text", f"{ds.name} sentences") for r in ("teacher", "leaf")}
        # Asymmetric: sentence 1 by the leaf, sentence 2 by the teacher (a pair as the deployment sees it).
        scores = {
            mode: StsScores.from_json(evaluate_sts(ds, emb[a], emb[b])) for mode, (a, b) in MODES.items()
        }
        return StsResult(ds.name, scores, source=ds.source, pairs=len(ds.scores))

    def alignment(self, groups: list[tuple[list[str], str, str]]) -> dict[str, float]:
        """Mean L2 / cosine over (texts, task, label) groups, each encoded with its task's prompt."""
        import numpy as np

        from leaf_hub.evaluation.alignment import embedding_distance

        teacher, leaf = [], []
        for texts, task, label in groups:
            if texts:
                teacher.append(self.embed("teacher", texts, task, label))
                leaf.append(self.embed("leaf", texts, task, label))
        return embedding_distance(np.concatenate(teacher), np.concatenate(leaf))


def mrl_quant_variants(ds, query_emb, doc_emb, dims: list[int]) -> dict[str, float]:
    """nDCG@10 with truncated (renormalized) embeddings, then int8 and binary codes of the full vectors.

    :mod:`leaf_hub.evaluation.quantization` does the quantizing, as for the Space: int8 buckets calibrated on
    the document embeddings (the index's corpus) quantize both sides and score as their centres (cosine);
    binary keeps the sign bits as +-1 vectors, ranked by their dot product (``d - 2 * hamming``).
    """
    from leaf_hub.evaluation.quantization import index_view
    from leaf_hub.evaluation.retrieval import evaluate_embeddings

    out: dict[str, float] = {}
    for d in dims:
        q, docs = index_view(query_emb, doc_emb, d)
        out[f"dim={d}"] = evaluate_embeddings(ds, q, docs)["ndcg@10"]
    q8, d8 = index_view(query_emb, doc_emb, precision="int8")
    out["int8"] = evaluate_embeddings(ds, q8, d8)["ndcg@10"]
    qb, db = index_view(query_emb, doc_emb, precision="binary")
    out["binary"] = evaluate_embeddings(ds, qb, db, normalize=False)["ndcg@10"]
    return out


# ------------------------------------------------------------------------------------------ checkpoints


def _records(metrics_path: Path) -> list[dict]:
    records = []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
    return records


def _val_l2(record: dict) -> float | None:
    for key in ("val_l2", "validation_l2", "l2"):
        if isinstance(record.get(key), (int, float)):
            return float(record[key])
    validation = record.get("validation")
    if isinstance(validation, dict) and isinstance(validation.get("l2"), (int, float)):
        return float(validation["l2"])
    return None


def checkpoint_val_l2(run_dir: Path, checkpoint: Path, records: list[dict]) -> float | None:
    """A checkpoint's validation L2: its own leaf_run.json, else the run's metrics.jsonl.

    distill writes ``checkpoints/epoch-NNN`` when epoch NNN ends and then logs a record with
    ``"event": "epoch", "epoch": NNN``; the final ``leaf/`` is the best leaf by validation L2.
    """
    # Read as a plain record: a checkpoint's leaf_run.json may hold the validation score alone.
    try:
        record = read_json(checkpoint / "leaf_run.json")
    except LeafHubError:
        record = None
    own = _val_l2(record) if isinstance(record, dict) else None
    if own is not None:
        return own
    if checkpoint.name.startswith("epoch-"):
        try:
            epoch = int(checkpoint.name.split("-", 1)[1])
        except ValueError:
            return None
        matching = [r for r in records if r.get("epoch") == epoch and _val_l2(r) is not None]
        tagged = [r for r in matching if r.get("event") == "epoch"]
        chosen = (tagged or matching)[:1]
        return _val_l2(chosen[0]) if chosen else None
    values = [v for r in records if (v := _val_l2(r)) is not None]
    return min(values) if values else None


def run_checkpoints(run_dir: Path) -> list[tuple[str, Path]]:
    ckpts = sorted((run_dir / "checkpoints").glob("epoch-*"))
    out = [(p.name, p) for p in ckpts if p.is_dir() and (p / "modules.json").is_file()]
    if (run_dir / "leaf" / "modules.json").is_file():
        out.append(("final", run_dir / "leaf"))
    return out


def evaluate_checkpoints(
    evaluator: Evaluator, run_dir: Path, ds, device: str | None
) -> list[CheckpointResult]:
    from leaf_hub.evaluation.retrieval import evaluate_embeddings
    from leaf_hub.models import load_model

    records = _records(run_dir / "metrics.jsonl")
    checkpoints = run_checkpoints(run_dir)
    if not checkpoints:
        raise LeafHubError(
            f"{run_dir} has no checkpoints/epoch-*/ or leaf/ model folders; give a leaf-hub distill output folder"
        )
    teacher = evaluator.encoders["teacher"]
    teacher_docs = evaluator.embed("teacher", ds.docs, "document", f"{ds.name} documents")
    rows = []
    for name, path in checkpoints:
        model = load_model(path, device=device)
        check_dimensions(teacher.model, model, teacher.name, str(path))
        enc = Encoder("leaf", str(path), model)
        sub = Evaluator(teacher, enc, evaluator.store, evaluator.batch_size)
        queries = sub.embed("leaf", ds.queries, "query", f"{name}: {ds.name} queries")
        docs = sub.embed("leaf", ds.docs, "document", f"{name}: {ds.name} documents")
        rows.append(
            CheckpointResult(
                name=name,
                path=str(path),
                val_l2=checkpoint_val_l2(run_dir, path, records),
                task=ds.name,
                leaf=RetrievalScores.from_json(evaluate_embeddings(ds, queries, docs)),
                asymmetric=RetrievalScores.from_json(evaluate_embeddings(ds, queries, teacher_docs)),
            )
        )
        del model
    return rows


# ------------------------------------------------------------------------------------------ the stage


def _resolve_models(config: EvaluateConfig) -> tuple[str, str, Path | None]:
    run_dir = config.run
    if run_dir is not None and not run_dir.is_dir():
        raise ConfigError(
            "run", f"{{option}} {str(run_dir)!r} is not a folder; give a leaf-hub distill output folder"
        )
    leaf = config.leaf or str(run_dir / "leaf")
    teacher = config.teacher
    if not teacher:
        facts = DistillResult.find(leaf)
        recorded = facts.teacher if facts else None
        if not recorded:
            raise ConfigError(
                "teacher", f"no teacher given and {leaf} has no leaf_run.json naming one; pass {{option}}"
            )
        teacher = str(recorded)
        logger.info("teacher from leaf_run.json: %s", teacher)
    return leaf, teacher, run_dir


def _alignment_source(config: EvaluateConfig, run_dir: Path | None, leaf: str) -> str | None:
    if config.alignment_texts:
        return config.alignment_texts
    candidates = []
    if run_dir is not None:
        candidates.append(run_dir / "validation.jsonl")
    leaf_path = Path(leaf).expanduser()
    if leaf_path.is_dir():
        # OUTPUT/leaf/ sits beside OUTPUT/validation.jsonl in a distill run folder.
        candidates.append(leaf_path.resolve().parent / "validation.jsonl")
    for c in candidates:
        if c.is_file():
            return str(c)
    return None


def evaluate(config: EvaluateConfig | None = None, /, **options: Any) -> EvaluationReport:
    """Score a leaf, its teacher and the asymmetric pair on the configured tasks; write the report.

    Pass an :class:`EvaluateConfig` or its fields as keyword arguments (``evaluate(leaf=..., sts=[...])``).
    Every input is read before a model loads, so a typo fails in a second, not after minutes of encoding.
    Writes ``config.output`` (JSON, with the Markdown and PNGs beside it; ``output=None`` writes nothing)
    and, with ``save_to_leaf``, a copy into a local leaf folder for the model card; the paths written are in
    the report's ``files``.
    """
    if config is None:
        config = EvaluateConfig(**options)
    elif options:
        raise TypeError("give an EvaluateConfig or keyword options, not both")
    started = time.perf_counter()
    from leaf_hub.evaluation.alignment import load_alignment_texts
    from leaf_hub.evaluation.retrieval import load_retrieval
    from leaf_hub.evaluation.sts import load_sts

    config.validate()
    leaf_name, teacher_name, run_dir = _resolve_models(config)

    retrieval = [load_retrieval(spec) for spec in config.retrieval]
    overlap_sets = [load_retrieval(spec, require_qrels=False) for spec in config.overlap]
    sts_sets = [load_sts(spec) for spec in config.sts]
    alignment_source = _alignment_source(config, run_dir, leaf_name)
    held_out = load_alignment_texts(alignment_source, config.alignment_max) if alignment_source else None
    if run_dir is not None and not retrieval:
        raise ConfigError(
            "retrieval",
            "a run's checkpoints are plotted as validation L2 against nDCG@10: give a {option} collection too",
        )
    names = [d.name for d in (*retrieval, *overlap_sets, *sts_sets)]
    if len(set(names)) != len(names) or "alignment" in names:
        raise LeafHubError(f"two tasks share a name ({names}, and 'alignment'); rename one with NAME=PATH")
    if not (retrieval or overlap_sets or sts_sets or held_out):
        raise LeafHubError(
            "nothing to evaluate: give a retrieval or overlap collection, an STS set or held-out alignment "
            "texts (--retrieval, --overlap, --sts, --alignment-texts)"
        )

    from leaf_hub.evaluation.embedding_store import EmbeddingStore, model_fingerprint
    from leaf_hub.evaluation.hardware import Hardware
    from leaf_hub.models import is_normalized, weights_fingerprint

    backends = {"teacher": config.teacher_backend, "leaf": config.leaf_backend}
    store = EmbeddingStore(config.cache_dir, memory_only=not config.cache)
    t0 = time.perf_counter()
    teacher = load_encoder(teacher_name, backends["teacher"], config.device)
    leaf = load_encoder(leaf_name, backends["leaf"], config.device)
    load_s = time.perf_counter() - t0
    dim = check_dimensions(teacher, leaf, teacher_name, leaf_name)
    teacher_fp = weights_fingerprint(teacher)
    facts = DistillResult.find(leaf_name)
    recorded_fp = facts.teacher_fingerprint if facts else None
    # leaf_run.json records the PyTorch weights' fingerprint: comparable only with a PyTorch teacher.
    if recorded_fp and backends["teacher"] == "torch" and recorded_fp != teacher_fp:
        logger.warning(
            "the leaf's leaf_run.json records teacher fingerprint %s but %s has %s: is this the teacher it was "
            "distilled from?",
            recorded_fp,
            teacher_name,
            teacher_fp,
        )
    dims = parse_dims(config.dims, dim) if config.mrl_quant else None
    ev = Evaluator(
        Encoder("teacher", teacher_name, teacher), Encoder("leaf", leaf_name, leaf), store, config.batch_size
    )

    meta = EvaluationMeta(leaf=leaf_name, teacher=teacher_name, backends=backends, dimension=dim)
    report = EvaluationReport(meta=meta)
    overlaps: dict[str, list[float]] = {"leaf": [], "asymmetric": []}
    for ds in retrieval:
        logger.info("retrieval: %s (%d documents, %d queries)", ds.name, len(ds.docs), len(ds.queries))
        result = ev.retrieval(ds, dims)
        report.retrieval.append(result)
        for mode in overlaps:
            overlaps[mode].append(result.scores[mode].top10_overlap)
    for ds in overlap_sets:
        logger.info("top-10 overlap: %s", ds.name)
        result = RetrievalResult(ds.name, source=ds.source, stats=dict(ds.stats), labelled=False)
        for mode, value in ev.overlap_only(ds).items():
            result.scores[mode] = RetrievalScores(top10_overlap=value)
            overlaps[mode].append(value)
        report.retrieval.append(result)
    for ds in sts_sets:
        logger.info("STS: %s (%d pairs)", ds.name, len(ds.scores))
        report.sts.append(ev.sts(ds))

    if held_out is not None:
        groups = [
            (held_out.queries, "query", "held-out queries"),
            (held_out.documents, "document", "held-out documents"),
            (held_out.texts, "text", "held-out texts"),
        ]
        alignment = AlignmentResult(source=held_out.source, texts=len(held_out))
    else:
        # No held-out file: the collections' own texts, already encoded (so this costs nothing).
        groups = []
        for ds in (*retrieval, *overlap_sets):
            groups += [
                (ds.queries, "query", f"{ds.name} queries"),
                (ds.docs, "document", f"{ds.name} documents"),
            ]
        alignment = AlignmentResult(source="the retrieval collections' queries and documents")
    if groups:
        distance = ev.alignment(groups)
        alignment.texts = distance.pop("num_texts")
        alignment.scores["leaf"] = AlignmentScores.from_json(distance)
    else:
        alignment.source = None
    for mode, values in overlaps.items():
        if values:
            alignment.scores.setdefault(mode, AlignmentScores()).top10_overlap = sum(values) / len(values)
    report.alignment = alignment if alignment.scores else None

    if run_dir is not None:
        report.checkpoints = evaluate_checkpoints(ev, run_dir, retrieval[0], config.device)

    total_s = time.perf_counter() - started
    meta.leaf_fingerprint = weights_fingerprint(leaf)
    meta.teacher_fingerprint = teacher_fp
    meta.normalized = {"teacher": is_normalized(teacher), "leaf": is_normalized(leaf)}
    meta.max_seq_length = {"teacher": teacher.max_seq_length, "leaf": leaf.max_seq_length}
    meta.prompts = {"teacher": dict(teacher.prompts or {}), "leaf": dict(leaf.prompts or {})}
    meta.mrl_dims = dims
    meta.protocol = dict(PROTOCOL)
    meta.timing = Timing(
        total_s=round(total_s, 2),
        model_load_s=round(load_s, 2),
        encode_s=round(store.encode_seconds, 2),
        other_s=round(total_s - store.encode_seconds, 2),
        bare_encode_s=round(store.bare_seconds, 2),
        overhead_ratio=round((store.bare_seconds + total_s - store.encode_seconds) / store.bare_seconds, 3)
        if store.bare_seconds
        else None,
        cache_hits=store.hits,
        cache_misses=store.misses,
    )
    meta.cache = str(store.folder) if store.folder else None
    meta.model_fingerprints = {"teacher": model_fingerprint(teacher), "leaf": model_fingerprint(leaf)}
    meta.leaf_hub_version = _version()
    meta.hardware = Hardware.detect(device=str(getattr(leaf, "device", "cpu")))
    meta.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    if config.output is not None:
        report.files = report.write(config.output, plots=config.plots)
    if config.save_to_leaf:
        _save_to_leaf(report, leaf_name, backends)
    return report


def _save_to_leaf(report: EvaluationReport, leaf_name: str, backends: dict[str, str]) -> None:
    """The leaf's own report, or its exported graph's, feeds the model card; a PyTorch leaf scored against
    an ONNX teacher describes neither and is not copied."""
    from leaf_hub.evaluation.report import write_atomic
    from leaf_hub.hub.card import leaf_report_name

    copy_name = leaf_report_name(backends["leaf"])
    leaf_path = Path(leaf_name).expanduser()
    if backends["leaf"] == "torch" and backends["teacher"] != "torch":
        logger.info("a PyTorch leaf against an ONNX teacher: the report is not copied into the leaf folder")
    elif leaf_path.is_dir():
        target = leaf_path / copy_name
        write_atomic(target, (json.dumps(report.to_json(), indent=2) + "\n").encode())
        report.files.append(target)
    else:
        logger.info("leaf %s is not a local folder: %s not copied into it", leaf_name, copy_name)


def _version() -> str:
    from leaf_hub import __version__

    return __version__
