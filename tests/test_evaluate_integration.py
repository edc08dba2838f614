"""Integration: the real teacher on CISI reproduces the known nDCG@10, and evaluate runs on real models.

The teacher's CISI embeddings take about 12 minutes of a 2-core CPU; they go to the persistent embedding
cache ($LEAF_HUB_CACHE/embeddings or ~/.cache/leaf-hub/embeddings), so only the first run pays for them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytrec_eval
from conftest import STUDENT_ID, TEACHER_ID
from eval_helpers import write_beir

from leaf_hub.cli import main
from leaf_hub.evaluation.embedding_store import EmbeddingStore
from leaf_hub.evaluation.retrieval import evaluate_embeddings, load_beir_folder, run_from_search, search

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def teacher(offline_models):
    from leaf_hub.models import load_model

    return load_model(TEACHER_ID, device="cpu")


def test_teacher_cisi_ndcg_matches_the_reference(shared_data, teacher):
    ds = load_beir_folder(shared_data / "eval" / "cisi")
    assert ds.stats["judged_queries"] == 76 and ds.stats["skipped_queries"] == 36
    store = EmbeddingStore()  # persistent: computed once per machine
    queries = store.encode(teacher, ds.queries, "query", desc="teacher: cisi queries")
    docs = store.encode(teacher, ds.docs, "document", desc="teacher: cisi documents")
    result = evaluate_embeddings(ds, queries, docs)
    assert result["ndcg@10"] == pytest.approx(0.418, abs=0.002)
    # And pytrec_eval on the same run.
    idx, scores = search(queries[ds.judged], docs, k=100)
    per_query = pytrec_eval.RelevanceEvaluator(ds.qrels, {"ndcg_cut_10", "recall_100"}).evaluate(
        run_from_search(ds, idx, scores, ds.judged)
    )
    assert result["ndcg@10"] == pytest.approx(
        np.mean([v["ndcg_cut_10"] for v in per_query.values()]), abs=1e-6
    )
    assert result["recall@100"] == pytest.approx(
        np.mean([v["recall_100"] for v in per_query.values()]), abs=1e-6
    )


@pytest.fixture(scope="module")
def untrained_leaf(tmp_path_factory, offline_models):
    """An untrained leaf of the real student for the real teacher (seeded: same weights, cache hits)."""
    import torch

    from leaf_hub.leaf import build_leaf
    from leaf_hub.models import load_model

    folder = tmp_path_factory.mktemp("real_leaf")
    torch.manual_seed(0)
    build_leaf(load_model(STUDENT_ID, device="cpu"), 768, True, max_seq_length=384).save(str(folder))
    return folder


def _small_cisi(cisi, folder, n_queries: int = 6, docs_per_query: int = 4, extra: int = 16):
    """A few CISI queries, a few of their relevant documents and some others (short ones: cheap)."""
    corpus = [json.loads(line) for line in (cisi / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries = [json.loads(line) for line in (cisi / "queries.jsonl").read_text().splitlines() if line.strip()]
    rows = [line.split("\t") for line in (cisi / "qrels" / "test.tsv").read_text().splitlines()[1:] if line]
    length = {r["_id"]: len(r.get("text", "")) for r in corpus}
    judged = list(dict.fromkeys(r[0] for r in rows))[:n_queries]
    keep: set[str] = set()
    for q in judged:
        keep.update(sorted((d for qq, d, _ in rows if qq == q), key=length.get)[:docs_per_query])
    keep.update(sorted(length, key=length.get)[:extra])
    qrels = [(q, d, int(s)) for q, d, s in rows if q in judged and d in keep]
    return write_beir(
        folder, [r for r in corpus if r["_id"] in keep], [r for r in queries if r["_id"] in judged], qrels
    )


def test_evaluate_cli_with_real_models(shared_data, untrained_leaf, teacher, tmp_path):
    cisi = _small_cisi(shared_data / "eval" / "cisi", tmp_path / "cisi-small")
    sts = tmp_path / "sts-small.tsv"
    lines = (shared_data / "eval" / "stsb" / "sts-dev.csv").read_text(encoding="utf-8").splitlines()[:30]
    sts.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report.json"
    rc = main(
        ["evaluate", "--leaf", str(untrained_leaf), "--teacher", TEACHER_ID, "--retrieval", str(cisi)]
        + ["--sts", str(sts), "--output", str(out)]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["meta"]["dimension"] == 768
    assert report["meta"]["mrl_dims"] == [64, 128, 256, 512, 768]
    assert set(report["mrl_quant"]["asymmetric"]["cisi-small"]) == {
        "dim=64", "dim=128", "dim=256", "dim=512", "dim=768", "int8", "binary",
    }  # fmt: skip
    ds = load_beir_folder(cisi)
    store = EmbeddingStore()
    expected = evaluate_embeddings(
        ds, store.encode(teacher, ds.queries, "query"), store.encode(teacher, ds.docs, "document")
    )
    assert report["results"]["teacher"]["cisi-small"]["ndcg@10"] == pytest.approx(
        expected["ndcg@10"], abs=1e-6
    )
    # An untrained projection is not in the teacher's space: the label-free measures say so.
    assert report["results"]["leaf"]["alignment"]["cosine"] < 0.5
    assert report["results"]["asymmetric"]["alignment"]["top10_overlap"] < 0.9
    assert report["results"]["teacher"]["sts-small"]["spearman"] > 0.5
    assert (untrained_leaf / "eval_report.json").is_file()
