"""Retrieval evaluation: BEIR-layout collections, exact cosine search and the nDCG@10 / recall@100 metrics.

A collection comes from a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), from a
Hub dataset in the same layout (``hf:mteb/scifact``: configs ``corpus``, ``queries`` and ``default`` or
``qrels``), or from NanoBEIR by name (``nanobeir:scifact``). The protocol is BEIR's:

- document text = ``(title + " " + text).strip()``; queries get the query prompt, documents the document
  prompt (that is the encoders' business, see :mod:`leaf_hub.evaluation.embedding_store`);
- only queries with at least one judgment are scored; the others are skipped and counted, and judged
  documents missing from the corpus are warned about and counted; qrels that match no query id, or whose
  relevant documents are all missing from the corpus, are refused (every score would be 0);
- nDCG@k uses graded gains ``rel / log2(rank + 1)`` (trec_eval's ``ndcg_cut``, which BEIR reports) and
  recall@k is the share of relevant (rel > 0) documents in the top k; both are means over judged queries.
  The metrics are cross-checked against pytrec_eval in the tests.

Search is exact: cosine similarity of all queries against all documents, in chunks so memory stays bounded,
keeping the top k per query. Ties (frequent with binary codes) are broken by corpus order.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leaf_hub.errors import LeafHubError
from leaf_hub.offline import hub_offline

logger = logging.getLogger(__name__)

NANOBEIR_ID = "sentence-transformers/NanoBEIR-en"
# NanoBEIR dataset names (as sentence-transformers' NanoBEIREvaluator spells them) -> split name suffix.
NANOBEIR = {
    "climatefever": "ClimateFEVER",
    "dbpedia": "DBPedia",
    "fever": "FEVER",
    "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA",
    "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus",
    "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval",
    "scidocs": "SCIDOCS",
    "arguana": "ArguAna",
    "scifact": "SciFact",
    "touche2020": "Touche2020",
}


@dataclass
class RetrievalDataset:
    """A retrieval collection ready to encode: texts in a fixed order, judgments by id."""

    name: str
    doc_ids: list[str]
    docs: list[str]
    query_ids: list[str]  # every query, judged or not (label-free measures use them all)
    queries: list[str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # judged queries only
    stats: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def judged(self) -> list[int]:
        """Positions in ``query_ids`` of the queries that have judgments."""
        return [i for i, qid in enumerate(self.query_ids) if qid in self.qrels]


def document_text(title: str | None, text: str | None) -> str:
    return f"{title or ''} {text or ''}".strip()


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LeafHubError(
                    f"{path} line {lineno} is not valid JSON ({exc.msg}); fix or remove it"
                ) from exc
    return rows


def _read_qrels_tsv(path: Path) -> list[tuple[str, str, int]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for lineno, row in enumerate(reader, start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise LeafHubError(
                    f"{path} line {lineno} has {len(row)} columns; qrels need query-id, corpus-id, score"
                )
            try:
                score = int(float(row[-1]))
            except ValueError:
                if lineno == 1:  # the header (query-id corpus-id score)
                    continue
                raise LeafHubError(f"{path} line {lineno}: score {row[-1]!r} is not a number") from None
            # TREC-style qrels have four columns (qid, iteration, docid, rel): the document id is second last.
            rows.append((row[0].strip(), row[-2].strip(), score))
    return rows


def build_dataset(
    name: str,
    corpus: Sequence[Mapping],
    queries: Sequence[Mapping],
    qrels_rows: Sequence[tuple[str, str, int]] | None,
    source: str,
) -> RetrievalDataset:
    """Assemble and validate a collection from BEIR rows (corpus: _id/title/text; queries: _id/text)."""
    doc_ids, docs, seen = [], [], set()
    for row in corpus:
        if "_id" not in row:
            raise LeafHubError(
                f"{source}: a corpus row has no '_id' field; BEIR corpus rows need _id, title, text"
            )
        did = str(row["_id"])
        if did in seen:
            continue
        seen.add(did)
        doc_ids.append(did)
        docs.append(document_text(row.get("title"), row.get("text")))
    if not doc_ids:
        raise LeafHubError(f"{source}: the corpus is empty; give a collection with at least one document")
    query_ids, query_texts = [], []
    for row in queries:
        if "_id" not in row or "text" not in row:
            raise LeafHubError(f"{source}: a query row lacks '_id' or 'text'; BEIR queries need both")
        query_ids.append(str(row["_id"]))
        query_texts.append(str(row["text"]))
    if not query_ids:
        raise LeafHubError(f"{source}: there are no queries; give a collection with queries.jsonl")
    stats = {"documents": len(doc_ids), "queries": len(query_ids)}
    qrels: dict[str, dict[str, int]] = {}
    if qrels_rows is not None:
        known_q = set(query_ids)
        missing_docs: set[tuple[str, str]] = set()
        unknown_queries: set[str] = set()
        for qid, did, score in qrels_rows:
            if qid not in known_q:
                unknown_queries.add(qid)
                continue
            if did not in seen:
                missing_docs.add((qid, did))
                # Kept: a relevant document that cannot be retrieved still counts in the ideal ranking.
            qrels.setdefault(qid, {})[did] = score
        if not qrels:
            raise LeafHubError(
                f"{source}: no qrels line matches a query id in queries.jsonl; check that the qrels split "
                "belongs to this collection"
            )
        relevant = {did for judged in qrels.values() for did, score in judged.items() if score > 0}
        if not relevant & seen:
            example = sorted(relevant or {did for judged in qrels.values() for did in judged})[0]
            raise LeafHubError(
                f"{source}: no judged document of the qrels is in the corpus ({len(relevant)} relevant ids, "
                f"e.g. {example!r}), so every score would be 0; check that the qrels split belongs to this "
                "corpus"
            )
        stats["judged_queries"] = len(qrels)
        stats["skipped_queries"] = len(known_q) - len(qrels)
        stats["qrels_docs_missing"] = len(missing_docs)
        stats["qrels_queries_missing"] = len(unknown_queries)
        if stats["skipped_queries"]:
            logger.info(
                "%s: %d of %d queries have no judgments and are skipped",
                name,
                stats["skipped_queries"],
                len(known_q),
            )
        if missing_docs:
            logger.warning(
                "%s: %d judged (query, document) pairs name documents absent from the corpus (e.g. %s); they "
                "count as relevant but can never be retrieved",
                name,
                len(missing_docs),
                sorted(missing_docs)[0][1],
            )
        if unknown_queries:
            logger.warning(
                "%s: qrels name %d query ids absent from queries.jsonl (e.g. %s); ignored",
                name,
                len(unknown_queries),
                sorted(unknown_queries)[0],
            )
    return RetrievalDataset(name, doc_ids, docs, query_ids, query_texts, qrels, stats, source)


def load_beir_folder(
    path: str | Path, split: str = "test", name: str | None = None, require_qrels: bool = True
) -> RetrievalDataset:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LeafHubError(f"retrieval collection {str(path)!r} is not a folder; give a BEIR folder or hf:ID")
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    for p in (corpus_path, queries_path):
        if not p.is_file():
            raise LeafHubError(
                f"{folder} has no {p.name}; a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/"
            )
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels_rows = None
    if qrels_path.is_file():
        qrels_rows = _read_qrels_tsv(qrels_path)
        if not qrels_rows:
            raise LeafHubError(
                f"{qrels_path} has no judgments; give a qrels file with query-id, corpus-id, score"
            )
    elif require_qrels:
        have = sorted(p.name for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise LeafHubError(
            f"{folder} has no qrels/{split}.tsv (relevance judgments)"
            + (f"; available: {', '.join(have)} (pick one with NAME=PATH:SPLIT)" if have else "")
            + "; retrieval metrics need qrels (label-free top-10 overlap works without: --overlap PATH)"
        )
    return build_dataset(
        name or folder.name, _read_jsonl(corpus_path), _read_jsonl(queries_path), qrels_rows, str(folder)
    )


def _hub_error(dataset_id: str, exc: Exception) -> LeafHubError:
    if hub_offline(datasets=True):
        return LeafHubError(
            f"Hub dataset {dataset_id!r} is not available offline (the Hub is unreachable and it is not in "
            "the local datasets cache); connect to the Hub or give a local BEIR folder"
        )
    return LeafHubError(
        f"could not load Hub dataset {dataset_id!r} ({type(exc).__name__}: {exc}); check the id"
    )


def _load_hub_config(dataset_id: str, configs: Sequence[str], splits: Sequence[str]):
    """One split of one config of a Hub dataset: the first of ``configs`` and ``splits`` that exists (a
    config with a single split is taken whatever its name)."""
    from datasets import get_dataset_config_names, get_dataset_split_names, load_dataset

    try:
        available = get_dataset_config_names(dataset_id)
        config = next((c for c in configs if c in available), None)
        if config is None:
            raise LeafHubError(
                f"Hub dataset {dataset_id!r} has no {' or '.join(configs)} config (it has {available}); "
                "it is not in BEIR layout"
            )
        names = get_dataset_split_names(dataset_id, config)
        split = next((s for s in splits if s in names), names[0] if len(names) == 1 else None)
        if split is None:
            raise LeafHubError(
                f"Hub dataset {dataset_id!r} config {config!r} has no split {' or '.join(splits)} (it has {names}); "
                "pick one with hf:ID:SPLIT"
            )
        return load_dataset(dataset_id, config, split=split)
    except LeafHubError:
        raise
    except Exception as exc:  # datasets raises many types for unknown or unreachable ids
        raise _hub_error(dataset_id, exc) from exc


def _qrels_rows_from_hub(table) -> list[tuple[str, str, int]]:
    rows = []
    for r in table:
        score = int(r.get("score", 1))
        dids = r["corpus-id"] if isinstance(r["corpus-id"], list) else [r["corpus-id"]]
        rows.extend((str(r["query-id"]), str(did), score) for did in dids)
    return rows


def load_hub(dataset_id: str, split: str = "test", name: str | None = None) -> RetrievalDataset:
    """A Hub dataset in BEIR layout (mteb/* datasets): configs corpus, queries and default/qrels."""
    corpus = _load_hub_config(dataset_id, ["corpus"], ["corpus", "train"])
    queries = _load_hub_config(dataset_id, ["queries"], ["queries", "train", split])
    qrels = _load_hub_config(dataset_id, ["default", "qrels"], [split])
    return build_dataset(
        name or dataset_id.rsplit("/", 1)[-1],
        corpus,
        queries,
        _qrels_rows_from_hub(qrels),
        f"hf:{dataset_id}",
    )


def load_nanobeir(dataset: str, name: str | None = None) -> RetrievalDataset:
    key = dataset.lower().removeprefix("nano")
    if key not in NANOBEIR:
        raise LeafHubError(f"{dataset!r} is not a NanoBEIR dataset; choose one of {', '.join(NANOBEIR)}")
    split = f"Nano{NANOBEIR[key]}"
    corpus = _load_hub_config(NANOBEIR_ID, ["corpus"], [split])
    queries = _load_hub_config(NANOBEIR_ID, ["queries"], [split])
    qrels = _load_hub_config(NANOBEIR_ID, ["qrels"], [split])
    return build_dataset(name or split, corpus, queries, _qrels_rows_from_hub(qrels), f"nanobeir:{key}")


def parse_spec(spec: str) -> tuple[str | None, str, str | None]:
    """``[NAME=]SOURCE[:SPLIT]`` -> (name, source, split). The split suffix is only read after a folder/id."""
    name = None
    if "=" in spec.split("/", 1)[0] or ("=" in spec and not Path(spec).exists()):
        name, spec = spec.split("=", 1)
    split = None
    head, sep, tail = spec.rpartition(":")
    if (
        sep
        and head
        and tail
        and "/" not in tail
        and not Path(spec).exists()
        and head not in ("hf", "nanobeir")
    ):
        spec, split = head, tail
    return name, spec, split


def load_retrieval(spec: str, require_qrels: bool = True) -> RetrievalDataset:
    """Load ``[NAME=]FOLDER[:SPLIT]``, ``hf:ORG/NAME[:SPLIT]`` or ``nanobeir:NAME``."""
    name, source, split = parse_spec(spec)
    if source.startswith("nanobeir:"):
        return load_nanobeir(source.split(":", 1)[1], name)
    if source.startswith("hf:"):
        return load_hub(source[3:], split or "test", name)
    path = Path(source).expanduser()
    if not path.exists() and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return load_hub(source, split or "test", name)  # a bare Hub id
    return load_beir_folder(path, split or "test", name, require_qrels=require_qrels)


# ----------------------------------------------------------------------------------------------- search


def _as_unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def search(
    queries: np.ndarray,
    docs: np.ndarray,
    k: int = 100,
    *,
    normalize: bool = True,
    query_chunk: int = 256,
    doc_chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by cosine (or dot product with ``normalize=False``): (indices, scores), best first.

    Ties keep corpus order (lower index first), which makes results deterministic for integer scores.
    """
    import torch

    if queries.shape[1] != docs.shape[1]:
        raise LeafHubError(
            f"query embeddings have {queries.shape[1]} dimensions and documents {docs.shape[1]}; the two "
            "encoders do not share a vector space"
        )
    if normalize:
        queries, docs = _as_unit(queries), _as_unit(docs)
    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    d_all = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    k = min(k, d_all.shape[0])
    out_idx = np.empty((q_all.shape[0], k), dtype=np.int64)
    out_scores = np.empty((q_all.shape[0], k), dtype=np.float32)
    for qs in range(0, q_all.shape[0], query_chunk):
        q = q_all[qs : qs + query_chunk]
        best_s, best_i = None, None
        for ds in range(0, d_all.shape[0], doc_chunk):
            scores = q @ d_all[ds : ds + doc_chunk].T
            s, i = _topk_stable(scores, min(k, scores.shape[1]))
            i = i + ds
            if best_s is None:
                best_s, best_i = s, i
            else:
                best_s, best_i = _merge(best_s, best_i, s, i, k)
        out_idx[qs : qs + len(q)] = best_i.numpy()
        out_scores[qs : qs + len(q)] = best_s.numpy()
    return out_idx, out_scores


def _topk_stable(scores, k: int):
    """Top k by score, ties by lower index: a stable descending sort."""
    import torch

    s, i = torch.sort(scores, dim=1, descending=True, stable=True)
    return s[:, :k], i[:, :k]


def _merge(s1, i1, s2, i2, k):
    import torch

    # The earlier chunk has lower indices: putting it first keeps ties in corpus order.
    s, order = torch.sort(torch.cat([s1, s2], dim=1), dim=1, descending=True, stable=True)
    i = torch.gather(torch.cat([i1, i2], dim=1), 1, order)
    return s[:, :k], i[:, :k]


# ---------------------------------------------------------------------------------------------- metrics


def ndcg_at_k(ranked: Sequence[str], judgments: Mapping[str, int], k: int = 10) -> float:
    """trec_eval's ndcg_cut: gain = relevance grade, discount log2(rank + 1); 0 when nothing is relevant."""
    dcg = sum(judgments.get(did, 0) / math.log2(rank + 2) for rank, did in enumerate(ranked[:k]))
    ideal = sorted((g for g in judgments.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judgments: Mapping[str, int], k: int = 100) -> float:
    relevant = {did for did, g in judgments.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def run_from_search(
    dataset: RetrievalDataset, indices: np.ndarray, scores: np.ndarray, query_positions: Sequence[int]
) -> dict[str, dict[str, float]]:
    """A TREC-style run {query id: {doc id: score}} (for pytrec_eval and debugging)."""
    return {
        dataset.query_ids[qp]: {dataset.doc_ids[j]: float(s) for j, s in zip(idx, sc, strict=True)}
        for qp, idx, sc in zip(query_positions, indices, scores, strict=True)
    }


def evaluate_embeddings(
    dataset: RetrievalDataset,
    query_emb: np.ndarray,
    doc_emb: np.ndarray,
    *,
    normalize: bool = True,
    ndcg_k: int = 10,
    recall_k: int = 100,
) -> dict[str, float]:
    """nDCG@10 and recall@100 over the judged queries. ``query_emb`` has one row per query (all queries)."""
    judged = dataset.judged
    if not judged:
        raise LeafHubError(f"{dataset.name}: no judged queries; retrieval metrics need qrels")
    indices, _ = search(query_emb[judged], doc_emb, k=max(ndcg_k, recall_k), normalize=normalize)
    ndcg, recall = [], []
    for qp, row in zip(judged, indices, strict=True):
        ranked = [dataset.doc_ids[j] for j in row]
        judgments = dataset.qrels[dataset.query_ids[qp]]
        ndcg.append(ndcg_at_k(ranked, judgments, ndcg_k))
        recall.append(recall_at_k(ranked, judgments, recall_k))
    return {f"ndcg@{ndcg_k}": float(np.mean(ndcg)), f"recall@{recall_k}": float(np.mean(recall))}


def topk_overlap(
    query_a: np.ndarray, docs_a: np.ndarray, query_b: np.ndarray, docs_b: np.ndarray, k: int = 10
) -> float:
    """Mean share of system A's top-k documents that are also in system B's top-k (label-free agreement)."""
    ia, _ = search(query_a, docs_a, k=k)
    ib, _ = search(query_b, docs_b, k=k)
    kk = ia.shape[1]
    return float(np.mean([len(set(a) & set(b)) / kk for a, b in zip(ia.tolist(), ib.tolist(), strict=True)]))
