"""``leaf-hub evaluate``: measure a leaf against its teacher, side by side with the asymmetric pair.

Three systems are scored on every task: the teacher, the leaf (standard mode: the leaf encodes queries and
documents) and the asymmetric pair (the leaf encodes queries, the teacher documents: the deployment LEAF
is made for). Tasks:

- retrieval (``--retrieval``, repeatable): nDCG@10 and recall@100 on BEIR collections (:mod:`.retrieval`);
- STS (``--sts``, repeatable): Spearman of cosine similarity (:mod:`.sts`);
- alignment, label-free: mean L2 / cosine between leaf and teacher embeddings of held-out texts, and the
  overlap of the leaf's top-10 with the teacher's top-10 on every collection (:mod:`.alignment`);
- MRL and quantization: nDCG@10 with embeddings truncated to 64..full dimensions and quantized to int8 and
  binary, for all three systems;
- with ``--run RUN_DIR``: every checkpoint of a distillation run, validation L2 against nDCG@10.

Models run in PyTorch, or (``--leaf-backend`` / ``--teacher-backend onnx`` or ``onnx-int8``) as their ONNX
export on ONNX Runtime, so the scores are those of what is served: int8 weights move the embeddings.

Encoding is the only expensive step, so each text set is encoded once per model and cached on disk
(:mod:`.embedding_store`): the three systems need two corpus encodings and two query encodings, and MRL /
quantization variants reuse them. The report (JSON, Markdown, PNGs) is written by :mod:`.report`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaf_hub.errors import LeafHubError
from leaf_hub.files import read_json
from leaf_hub.models import BACKENDS

logger = logging.getLogger(__name__)

# mode -> (query encoder, document encoder)
MODES = {"teacher": ("teacher", "teacher"), "leaf": ("leaf", "leaf"), "asymmetric": ("leaf", "teacher")}
DEFAULT_ALIGNMENT_MAX = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leaf", help="leaf model folder or Hub id (default: RUN_DIR/leaf with --run)")
    parser.add_argument(
        "--teacher",
        help="teacher Hub id or folder (default: the 'teacher' recorded in the leaf's leaf_run.json)",
    )
    parser.add_argument(
        "--retrieval",
        action="append",
        default=[],
        metavar="[NAME=]PATH_OR_ID[:SPLIT]",
        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv; split test), hf:ORG/NAME Hub dataset "
        "in BEIR layout, or nanobeir:NAME (Hub); repeatable",
    )
    parser.add_argument(
        "--sts",
        action="append",
        default=[],
        metavar="[NAME=]PATH_OR_ID",
        help="STS-B layout file (sts-dev.csv), score<TAB>s1<TAB>s2 TSV, hf:ORG/NAME[:SPLIT] or stsb (the Hub's "
        "STS-B test split); repeatable",
    )
    parser.add_argument(
        "--overlap",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a folder with corpus.jsonl and queries.jsonl (no qrels needed) for the label-free top-10 "
        "overlap; repeatable (retrieval collections get it too)",
    )
    parser.add_argument(
        "--alignment-texts",
        metavar="PATH",
        help="held-out texts for leaf-vs-teacher L2/cosine: text file, JSON lines (text, type), or a run folder "
        "with validation.jsonl (default: RUN_DIR/validation.jsonl, else the collections' texts)",
    )
    parser.add_argument(
        "--alignment-max",
        type=int,
        default=DEFAULT_ALIGNMENT_MAX,
        metavar="N",
        help=f"use at most the first N held-out texts (default {DEFAULT_ALIGNMENT_MAX})",
    )
    parser.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="a distillation run folder: also evaluate RUN_DIR/checkpoints/epoch-* and plot validation L2 "
        "against nDCG@10 on the first --retrieval collection",
    )
    parser.add_argument("--output", default="report.json", help="report JSON path; .md and PNGs go beside it")
    parser.add_argument(
        "--dims",
        help="comma-separated Matryoshka dimensions (default 64, 128, 256, ... below the full dimension, and full)",
    )
    parser.add_argument(
        "--no-mrl-quant", action="store_true", help="skip the truncation / quantization variants"
    )
    parser.add_argument("--no-plots", action="store_true", help="write JSON and Markdown only")
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size (default 32)")
    parser.add_argument("--device", help="torch device (default: sentence-transformers' choice)")
    for role in ("leaf", "teacher"):
        parser.add_argument(
            f"--{role}-backend",
            choices=BACKENDS,
            default="torch",
            help=f"run the {role} in PyTorch (default) or as its ONNX export, fp32 or int8 weights, on ONNX "
            "Runtime (CPU; CUDA with --device cuda and onnxruntime-gpu; exported into the leaf-hub cache when "
            "the folder has no onnx/): the quality of what you serve",
        )
    parser.add_argument(
        "--cache-dir",
        help="embedding cache folder (default $LEAF_HUB_CACHE/embeddings or ~/.cache/leaf-hub/embeddings)",
    )
    parser.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    parser.add_argument(
        "--save-to-leaf",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="copy the report into the leaf folder as eval_report.json, or eval_report.BACKEND.json for "
        "--leaf-backend onnx / onnx-int8, where the model card finds them (default on; skipped for Hub ids)",
    )


# ------------------------------------------------------------------------------------------ helpers


def default_dims(full: int) -> list[int]:
    dims, d = [], 64
    while d < full:
        dims.append(d)
        d *= 2
    return [*dims, full]


def parse_dims(text: str | None, full: int) -> list[int]:
    if not text:
        return default_dims(full)
    try:
        dims = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise LeafHubError(
            f"--dims {text!r} is not a comma-separated list of integers; e.g. --dims 64,128,256"
        ) from None
    if not dims or dims[0] < 1:
        raise LeafHubError(f"--dims {text!r}: dimensions must be positive integers")
    too_big = [d for d in dims if d > full]
    if too_big:
        raise LeafHubError(f"--dims {too_big} exceed the embedding dimension {full}; use values up to {full}")
    return sorted({*dims, full})


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return read_json(path) or {}
    except LeafHubError:
        return {}


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

    def retrieval(self, ds, dims: list[int] | None) -> tuple[dict, dict]:
        """(results[mode] metrics, mrl_quant[mode] variants) for one collection."""
        from leaf_hub.evaluation.retrieval import evaluate_embeddings

        queries, docs = self.retrieval_embeddings(ds)
        results, variants = {}, {}
        for mode, (qr, dr) in MODES.items():
            results[mode] = evaluate_embeddings(ds, queries[qr], docs[dr])
            if dims is not None:
                variants[mode] = mrl_quant_variants(ds, queries[qr], docs[dr], dims)
        overlap = self.overlaps(queries, docs)
        for mode, value in overlap.items():
            results[mode]["top10_overlap"] = value
        return results, variants

    def overlaps(self, queries: dict, docs: dict, k: int = 10) -> dict[str, float]:
        """Share of the teacher's top-k also in the leaf's (standard) and the pair's (asymmetric) top-k."""
        from leaf_hub.evaluation.retrieval import topk_overlap

        tq, td, lq, ld = queries["teacher"], docs["teacher"], queries["leaf"], docs["leaf"]
        return {"leaf": topk_overlap(lq, ld, tq, td, k), "asymmetric": topk_overlap(lq, td, tq, td, k)}

    def overlap_only(self, ds) -> dict[str, float]:
        queries, docs = self.retrieval_embeddings(ds)
        return self.overlaps(queries, docs)

    def sts(self, ds) -> dict[str, dict[str, float]]:
        from leaf_hub.evaluation.sts import evaluate_sts

        sentences, _, _ = ds.unique_sentences()
        emb = {r: self.embed(r, sentences, "text", f"{ds.name} sentences") for r in ("teacher", "leaf")}
        # Asymmetric: sentence 1 by the leaf, sentence 2 by the teacher (a pair as the deployment sees it).
        return {mode: evaluate_sts(ds, emb[a], emb[b]) for mode, (a, b) in MODES.items()}

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

    int8: sentence-transformers' ``quantize_embeddings`` with per-dimension ranges calibrated on the document
    embeddings (what an index would calibrate on), applied to both sides; cosine over the codes. binary: the
    sign bits (``ubinary``), ranked by Hamming distance, computed as the dot product of +-1 vectors
    (dot = d - 2 * hamming).
    """
    import numpy as np
    from sentence_transformers.util import quantize_embeddings

    from leaf_hub.evaluation.retrieval import evaluate_embeddings

    out: dict[str, float] = {}
    for d in dims:
        out[f"dim={d}"] = evaluate_embeddings(ds, query_emb[:, :d], doc_emb[:, :d])["ndcg@10"]
    q8 = quantize_embeddings(query_emb, precision="int8", calibration_embeddings=doc_emb)
    d8 = quantize_embeddings(doc_emb, precision="int8", calibration_embeddings=doc_emb)
    out["int8"] = evaluate_embeddings(ds, q8.astype(np.float32), d8.astype(np.float32))["ndcg@10"]
    dim = query_emb.shape[1]

    def signs(x):
        bits = np.unpackbits(quantize_embeddings(x, precision="ubinary"), axis=1)[:, :dim]
        return bits.astype(np.float32) * 2 - 1

    out["binary"] = evaluate_embeddings(ds, signs(query_emb), signs(doc_emb), normalize=False)["ndcg@10"]
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
    own = _val_l2(_read_json(checkpoint / "leaf_run.json"))
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


def evaluate_checkpoints(evaluator: Evaluator, run_dir: Path, ds, device: str | None) -> list[dict[str, Any]]:
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
            {
                "name": name,
                "path": str(path),
                "val_l2": checkpoint_val_l2(run_dir, path, records),
                "task": ds.name,
                "leaf": evaluate_embeddings(ds, queries, docs),
                "asymmetric": evaluate_embeddings(ds, queries, teacher_docs),
            }
        )
        del model
    return rows


# ------------------------------------------------------------------------------------------ the stage


def _resolve_models(args: argparse.Namespace) -> tuple[str, str, Path | None]:
    run_dir = Path(args.run).expanduser() if args.run else None
    if run_dir is not None and not run_dir.is_dir():
        raise LeafHubError(f"--run {args.run!r} is not a folder; give a leaf-hub distill output folder")
    leaf = args.leaf or (str(run_dir / "leaf") if run_dir is not None else None)
    if not leaf:
        raise LeafHubError("no leaf given; pass --leaf DIR (or --run RUN_DIR to use RUN_DIR/leaf)")
    teacher = args.teacher
    if not teacher:
        recorded = _read_json(Path(leaf).expanduser() / "leaf_run.json").get("teacher")
        if not recorded:
            raise LeafHubError(f"no teacher given and {leaf} has no leaf_run.json naming one; pass --teacher")
        teacher = str(recorded)
        logger.info("teacher from leaf_run.json: %s", teacher)
    return leaf, teacher, run_dir


def _alignment_source(args, run_dir: Path | None, leaf: str) -> str | None:
    if args.alignment_texts:
        return args.alignment_texts
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


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from leaf_hub.evaluation.alignment import load_alignment_texts
    from leaf_hub.evaluation.retrieval import load_retrieval
    from leaf_hub.evaluation.sts import load_sts

    if args.batch_size < 1:
        raise LeafHubError(f"--batch-size {args.batch_size} must be at least 1")
    if args.alignment_max < 1:
        raise LeafHubError(f"--alignment-max {args.alignment_max} must be at least 1")
    leaf_name, teacher_name, run_dir = _resolve_models(args)
    output = Path(args.output).expanduser()
    if output.is_dir():
        raise LeafHubError(f"--output {args.output!r} is a folder; give a file name such as report.json")

    # Read every input before loading a model: a typo fails in a second, not after minutes of encoding.
    retrieval = [load_retrieval(spec) for spec in args.retrieval]
    overlap_sets = [load_retrieval(spec, require_qrels=False) for spec in args.overlap]
    sts_sets = [load_sts(spec) for spec in args.sts]
    alignment_source = _alignment_source(args, run_dir, leaf_name)
    held_out = load_alignment_texts(alignment_source, args.alignment_max) if alignment_source else None
    if run_dir is not None and not retrieval:
        raise LeafHubError("--run plots validation L2 against nDCG@10: give a --retrieval collection too")
    names = [d.name for d in (*retrieval, *overlap_sets, *sts_sets)]
    if len(set(names)) != len(names) or "alignment" in names:
        raise LeafHubError(f"two tasks share a name ({names}, and 'alignment'); rename one with NAME=PATH")
    if args.dims:
        parse_dims(args.dims, 1 << 30)  # the syntax now; the sizes once the dimension is known
    if not (retrieval or overlap_sets or sts_sets or held_out):
        raise LeafHubError("nothing to evaluate; give --retrieval, --sts, --overlap or --alignment-texts")
    backends = {"teacher": args.teacher_backend, "leaf": args.leaf_backend}
    if run_dir is not None and backends["leaf"] != "torch":
        raise LeafHubError(
            f"--run evaluates the run's PyTorch checkpoints, which have no ONNX export; drop --leaf-backend "
            f"{backends['leaf']} or evaluate the exported leaf on its own with --leaf"
        )

    from leaf_hub.evaluation.embedding_store import EmbeddingStore, model_fingerprint
    from leaf_hub.models import is_normalized, weights_fingerprint

    store = EmbeddingStore(args.cache_dir, memory_only=args.no_cache)
    t0 = time.perf_counter()
    teacher = load_encoder(teacher_name, backends["teacher"], args.device)
    leaf = load_encoder(leaf_name, backends["leaf"], args.device)
    load_s = time.perf_counter() - t0
    dim = check_dimensions(teacher, leaf, teacher_name, leaf_name)
    teacher_fp = weights_fingerprint(teacher)
    recorded_fp = _read_json(Path(leaf_name).expanduser() / "leaf_run.json").get("teacher_fingerprint")
    # leaf_run.json records the PyTorch weights' fingerprint: comparable only with a PyTorch teacher.
    if recorded_fp and backends["teacher"] == "torch" and recorded_fp != teacher_fp:
        logger.warning(
            "the leaf's leaf_run.json records teacher fingerprint %s but %s has %s: is this the teacher it was "
            "distilled from?",
            recorded_fp,
            teacher_name,
            teacher_fp,
        )
    dims = None if args.no_mrl_quant else parse_dims(args.dims, dim)
    ev = Evaluator(
        Encoder("teacher", teacher_name, teacher), Encoder("leaf", leaf_name, leaf), store, args.batch_size
    )

    results: dict[str, dict[str, dict[str, float]]] = {m: {} for m in MODES}
    mrl_quant: dict[str, dict[str, dict[str, float]]] = {m: {} for m in MODES}
    datasets: dict[str, dict[str, Any]] = {}
    overlaps: dict[str, list[float]] = {"leaf": [], "asymmetric": []}
    for ds in retrieval:
        logger.info("retrieval: %s (%d documents, %d queries)", ds.name, len(ds.docs), len(ds.queries))
        res, var = ev.retrieval(ds, dims)
        for mode in MODES:
            results[mode][ds.name] = res[mode]
            if var:
                mrl_quant[mode][ds.name] = var[mode]
        for mode in overlaps:
            overlaps[mode].append(res[mode]["top10_overlap"])
        datasets[ds.name] = {"kind": "retrieval", "source": ds.source, "stats": ds.stats}
    for ds in overlap_sets:
        logger.info("top-10 overlap: %s", ds.name)
        for mode, value in ev.overlap_only(ds).items():
            results[mode][ds.name] = {"top10_overlap": value}
            overlaps[mode].append(value)
        datasets[ds.name] = {"kind": "overlap", "source": ds.source, "stats": ds.stats}
    for ds in sts_sets:
        logger.info("STS: %s (%d pairs)", ds.name, len(ds.scores))
        for mode, value in ev.sts(ds).items():
            results[mode][ds.name] = value
        datasets[ds.name] = {"kind": "sts", "source": ds.source, "stats": {"pairs": len(ds.scores)}}

    if held_out is not None:
        groups = [
            (held_out.queries, "query", "held-out queries"),
            (held_out.documents, "document", "held-out documents"),
            (held_out.texts, "text", "held-out texts"),
        ]
        alignment_info = {"source": held_out.source, "stats": {"texts": len(held_out)}}
    else:
        # No held-out file: the collections' own texts, already encoded (so this costs nothing).
        groups = []
        for ds in (*retrieval, *overlap_sets):
            groups += [
                (ds.queries, "query", f"{ds.name} queries"),
                (ds.docs, "document", f"{ds.name} documents"),
            ]
        alignment_info = {"source": "the retrieval collections' queries and documents", "stats": {}}
    alignment: dict[str, dict[str, float]] = {}
    if groups:
        distance = ev.alignment(groups)
        alignment_info["stats"]["texts"] = distance.pop("num_texts")
        alignment["leaf"] = distance
        datasets["alignment"] = {"kind": "alignment", **alignment_info}
    for mode, values in overlaps.items():
        if values:
            alignment.setdefault(mode, {})["top10_overlap"] = sum(values) / len(values)
    for mode, metrics in alignment.items():
        results[mode]["alignment"] = metrics

    checkpoints = []
    if run_dir is not None:
        checkpoints = evaluate_checkpoints(ev, run_dir, retrieval[0], args.device)

    total_s = time.perf_counter() - started
    report = {
        "meta": {
            "leaf": leaf_name,
            "teacher": teacher_name,
            "backends": backends,
            "leaf_fingerprint": weights_fingerprint(leaf),
            "teacher_fingerprint": teacher_fp,
            "dimension": dim,
            "normalized": {"teacher": is_normalized(teacher), "leaf": is_normalized(leaf)},
            "max_seq_length": {"teacher": teacher.max_seq_length, "leaf": leaf.max_seq_length},
            "prompts": {"teacher": dict(teacher.prompts or {}), "leaf": dict(leaf.prompts or {})},
            "modes": {m: {"queries": q, "documents": d} for m, (q, d) in MODES.items()},
            "datasets": datasets,
            "mrl_dims": dims,
            "protocol": {
                "retrieval": "exact cosine search; nDCG@10 with graded gains (trec_eval ndcg_cut), recall@100; "
                "judged queries only; document = title + ' ' + text",
                "sts": "Spearman of cosine similarity, raw (not x100); no prompt",
                "int8": "quantize_embeddings int8, ranges calibrated on the corpus embeddings; cosine",
                "binary": "quantize_embeddings ubinary sign bits; Hamming distance",
                "asymmetric": "leaf encodes queries (and STS sentence 1), teacher documents (sentence 2)",
            },
            "timing": {
                "total_s": round(total_s, 2),
                "model_load_s": round(load_s, 2),
                "encode_s": round(store.encode_seconds, 2),
                "other_s": round(total_s - store.encode_seconds, 2),
                "bare_encode_s": round(store.bare_seconds, 2),
                # What the whole run would take with nothing cached, over the bare encoding time.
                "overhead_ratio": round(
                    (store.bare_seconds + total_s - store.encode_seconds) / store.bare_seconds, 3
                )
                if store.bare_seconds
                else None,
                "cache_hits": store.hits,
                "cache_misses": store.misses,
            },
            "cache": str(store.folder) if store.folder else None,
            "model_fingerprints": {"teacher": model_fingerprint(teacher), "leaf": model_fingerprint(leaf)},
            "leaf_hub_version": _version(),
            "hardware": _hardware(leaf),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "results": {m: r for m, r in results.items() if r},
        "mrl_quant": {m: r for m, r in mrl_quant.items() if r},
    }
    if checkpoints:
        report["checkpoints"] = checkpoints

    from leaf_hub.evaluation.report import write_atomic, write_report
    from leaf_hub.hub.card import leaf_report_name

    written = write_report(report, output, plots=not args.no_plots)
    leaf_path = Path(leaf_name).expanduser()
    # The leaf's own report, or its exported graph's, feeds the model card; a PyTorch leaf scored against
    # an ONNX teacher describes neither and is not copied.
    copy_name = leaf_report_name(backends["leaf"])
    if args.save_to_leaf:
        if backends["leaf"] == "torch" and backends["teacher"] != "torch":
            logger.info(
                "a PyTorch leaf against an ONNX teacher: the report is not copied into the leaf folder"
            )
        elif leaf_path.is_dir():
            target = leaf_path / copy_name
            write_atomic(target, (json.dumps(report, indent=2) + "\n").encode())
            written.append(target)
        else:
            logger.info("leaf %s is not a local folder: %s not copied into it", leaf_name, copy_name)
    _print_summary(report)
    for path in written:
        print(f"wrote {path}")
    return 0


def _hardware(model) -> str:
    device = str(getattr(model, "device", "cpu"))
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(0)} ({device})"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def _version() -> str:
    from leaf_hub import __version__

    return __version__


def _print_summary(report: dict[str, Any]) -> None:
    from leaf_hub.evaluation.report import results_table

    print("\n".join(results_table(report["results"])))
    t = report["meta"]["timing"]
    print(
        f"total {t['total_s']:.1f} s (encoding {t['encode_s']:.1f} s, cache hits {t['cache_hits']}, "
        f"misses {t['cache_misses']}; bare encoding time of all texts {t['bare_encode_s']:.1f} s"
        + (
            f", uncached total / bare encoding = {t['overhead_ratio']:.2f}x)"
            if t.get("overhead_ratio")
            else ")"
        )
    )
