"""Retrieval: BEIR loading and validation, exact search, and nDCG@10 / recall@100 against pytrec_eval and
sentence-transformers' InformationRetrievalEvaluator."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import pytrec_eval
from eval_helpers import cisi_subset, synthetic_beir, write_beir

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.embedding_store import EmbeddingStore
from leaf_hub.evaluation.retrieval import (
    build_dataset,
    evaluate_embeddings,
    load_beir_folder,
    load_retrieval,
    parse_spec,
    run_from_search,
    search,
    topk_overlap,
)


def pytrec_means(dataset, query_emb, doc_emb, k: int = 100) -> tuple[float, float, dict]:
    """nDCG@10 and recall@100 by pytrec_eval on our top-k run (the judged queries)."""
    judged = dataset.judged
    idx, scores = search(query_emb[judged], doc_emb, k=k)
    run = run_from_search(dataset, idx, scores, judged)
    evaluator = pytrec_eval.RelevanceEvaluator(dataset.qrels, {"ndcg_cut_10", "recall_100"})
    per_query = evaluator.evaluate(run)
    ndcg = float(np.mean([v["ndcg_cut_10"] for v in per_query.values()]))
    recall = float(np.mean([v["recall_100"] for v in per_query.values()]))
    assert len(per_query) == len(judged)
    return ndcg, recall, per_query


def test_graded_metrics_match_pytrec_eval():
    rng = np.random.default_rng(0)
    n_docs, n_queries = 300, 40
    corpus = [{"_id": f"doc{i}", "title": "", "text": f"t{i}"} for i in range(n_docs)]
    queries = [{"_id": f"q{i}", "text": f"q{i}"} for i in range(n_queries)]
    qrels = []
    for q in range(n_queries - 1):
        for d in rng.choice(n_docs, size=rng.integers(1, 30), replace=False):
            qrels.append((f"q{q}", f"doc{d}", int(rng.integers(0, 4))))  # grades 0..3, some 0 only
    qrels.append((f"q{n_queries - 1}", "doc0", 0))  # a query judged, but with nothing relevant
    ds = build_dataset("graded", corpus, queries, qrels, "test")
    doc_emb = rng.normal(size=(n_docs, 24)).astype(np.float32)
    # Queries near their relevant documents, so the metrics are far from 0 and from 1.
    query_emb = rng.normal(size=(n_queries, 24)).astype(np.float32)
    for q in range(n_queries):
        rel = [ds.doc_ids.index(d) for d, g in ds.qrels.get(f"q{q}", {}).items() if g > 0]
        if rel:
            query_emb[q] += doc_emb[rel].mean(0) * 1.5
    ours = evaluate_embeddings(ds, query_emb, doc_emb)
    ndcg, recall, _ = pytrec_means(ds, query_emb, doc_emb)
    assert 0.05 < ours["ndcg@10"] < 0.95
    assert ours["ndcg@10"] == pytest.approx(ndcg, abs=1e-6)
    assert ours["recall@100"] == pytest.approx(recall, abs=1e-6)


def test_cisi_subset_matches_pytrec_eval_and_sentence_transformers(shared_data, tiny_teacher_dir, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    folder = cisi_subset(shared_data / "eval" / "cisi", tmp_path / "cisi-sub", n_queries=25, n_extra_docs=150)
    ds = load_beir_folder(folder)
    model = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    store = EmbeddingStore(tmp_path / "cache")
    q = store.encode(model, ds.queries, "query")
    d = store.encode(model, ds.docs, "document")
    ours = evaluate_embeddings(ds, q, d)
    ndcg, recall, _ = pytrec_means(ds, q, d)
    assert ours["ndcg@10"] == pytest.approx(ndcg, abs=1e-6)
    assert ours["recall@100"] == pytest.approx(recall, abs=1e-6)
    # sentence-transformers encodes by itself (encode_query with the "query: " prompt, encode_document):
    # the same numbers also confirm our prompt routing. CISI grades are all 1, so binary gains agree.
    st = InformationRetrievalEvaluator(
        queries={ds.query_ids[i]: ds.queries[i] for i in ds.judged},
        corpus=dict(zip(ds.doc_ids, ds.docs, strict=True)),
        relevant_docs={qid: {d for d, g in j.items() if g > 0} for qid, j in ds.qrels.items()},
        ndcg_at_k=[10],
        precision_recall_at_k=[100],
        mrr_at_k=[10],
        accuracy_at_k=[10],
        map_at_k=[100],
        write_csv=False,
    )
    scores = st(model)
    st_ndcg = next(v for k, v in scores.items() if k.endswith("ndcg@10"))
    st_recall = next(v for k, v in scores.items() if k.endswith("recall@100"))
    assert ours["ndcg@10"] == pytest.approx(st_ndcg, abs=1e-4)
    assert ours["recall@100"] == pytest.approx(st_recall, abs=1e-4)


def test_search_chunked_equals_full_and_ties_keep_corpus_order():
    rng = np.random.default_rng(1)
    docs = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    i_full, s_full = search(queries, docs, k=50)
    i_chunk, s_chunk = search(queries, docs, k=50, query_chunk=5, doc_chunk=64)
    np.testing.assert_array_equal(i_full, i_chunk)
    np.testing.assert_allclose(s_full, s_chunk, atol=1e-6)
    # Exhaustive check of the first query.
    sims = (docs / np.linalg.norm(docs, axis=1, keepdims=True)) @ (queries[0] / np.linalg.norm(queries[0]))
    np.testing.assert_array_equal(i_full[0], np.argsort(-sims, kind="stable")[:50])
    # Identical documents tie: lower index first, across chunk borders too.
    dup = np.repeat(rng.normal(size=(1, 8)).astype(np.float32), 10, axis=0)
    idx, _ = search(dup[:1], dup, k=10, doc_chunk=3)
    assert idx[0].tolist() == list(range(10))


def test_topk_overlap_is_one_for_identical_systems_and_lower_otherwise():
    rng = np.random.default_rng(2)
    q, d = rng.normal(size=(20, 12)), rng.normal(size=(200, 12))
    assert topk_overlap(q, d, q, d) == 1.0
    noisy = topk_overlap(q + rng.normal(scale=0.5, size=q.shape), d, q, d)
    assert 0.0 < noisy < 1.0


def test_loader_counts_unjudged_queries_and_missing_documents(tmp_path, caplog):
    folder = write_beir(
        tmp_path / "c",
        [
            {"_id": "1", "title": " A title ", "text": "body "},
            {"_id": "2", "text": "only text"},
            {"_id": "3"},
        ],
        [{"_id": "q1", "text": "one"}, {"_id": "q2", "text": "two"}, {"_id": "q3", "text": "three"}],
        [("q1", "1", 1), ("q1", "99", 2), ("q2", "2", 1), ("q9", "1", 1)],
    )
    with caplog.at_level(logging.INFO, logger="leaf_hub.evaluation.retrieval"):
        ds = load_beir_folder(folder)
    assert ds.docs == ["A title  body", "only text", ""]
    assert ds.stats["judged_queries"] == 2
    assert ds.stats["skipped_queries"] == 1
    assert ds.stats["qrels_docs_missing"] == 1
    assert ds.stats["qrels_queries_missing"] == 1
    assert ds.judged == [0, 1]
    text = caplog.text
    assert "1 of 3 queries have no judgments" in text
    assert "absent from the corpus" in text and "99" in text
    assert "q9" in text
    # The missing relevant document counts in the ideal ranking: q1 can reach at most recall 0.5.
    emb_q = np.eye(3, 4, dtype=np.float32)
    emb_d = np.eye(3, 4, dtype=np.float32)
    res = evaluate_embeddings(ds, emb_q, emb_d)
    assert res["recall@100"] == pytest.approx((0.5 + 1.0) / 2)


def test_trec_four_column_qrels_and_split(tmp_path):
    folder = write_beir(
        tmp_path / "c",
        [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}],
        [{"_id": "1", "text": "q"}],
        None,
    )
    (folder / "qrels").mkdir()
    (folder / "qrels" / "dev.tsv").write_text("1\t0\tb\t3\n")
    ds = load_retrieval(f"mine={folder}:dev")
    assert ds.name == "mine"
    assert ds.qrels == {"1": {"b": 3}}


def test_parse_spec():
    assert parse_spec("/data/cisi") == (None, "/data/cisi", None)
    assert parse_spec("cisi=/data/cisi:dev") == ("cisi", "/data/cisi", "dev")
    assert parse_spec("hf:mteb/scifact") == (None, "hf:mteb/scifact", None)
    assert parse_spec("hf:mteb/scifact:dev") == (None, "hf:mteb/scifact", "dev")
    assert parse_spec("nanobeir:scifact") == (None, "nanobeir:scifact", None)


def _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, *extra):
    return main(
        [
            "evaluate",
            "--leaf",
            str(tiny_leaf_dir),
            "--teacher",
            str(tiny_teacher_dir),
            "--output",
            str(tmp_path / "out" / "report.json"),
            "--no-save-to-leaf",
            *extra,
        ]
    )


def test_cli_missing_qrels(tmp_path, tiny_teacher_dir, tiny_leaf_dir, capsys):
    folder = write_beir(tmp_path / "noqrels", [{"_id": "a", "text": "x"}], [{"_id": "1", "text": "q"}], None)
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", str(folder)) == 2
    err = capsys.readouterr().err
    assert "has no qrels/test.tsv" in err and err.count("\n") == 1
    # The overlap measure needs no qrels: the same folder is fine there.
    assert load_retrieval(str(folder), require_qrels=False).qrels == {}


def test_cli_empty_corpus(tmp_path, tiny_teacher_dir, tiny_leaf_dir, capsys):
    folder = write_beir(tmp_path / "empty", [], [{"_id": "1", "text": "q"}], [("1", "a", 1)])
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", str(folder)) == 2
    assert "the corpus is empty" in capsys.readouterr().err


def test_cli_not_a_beir_folder_and_bad_json(tmp_path, tiny_teacher_dir, tiny_leaf_dir, capsys):
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", str(tmp_path / "nope")) == 2
    assert "is not a folder" in capsys.readouterr().err
    folder = synthetic_beir(tmp_path / "syn")
    with open(folder / "corpus.jsonl", "a") as f:
        f.write("{broken\n")
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", str(folder)) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_cli_hub_collections_offline(tmp_path, tiny_teacher_dir, tiny_leaf_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", "hf:mteb/scifact") == 2
    assert "not available offline" in capsys.readouterr().err
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", "nanobeir:scifact") == 2
    assert "not available offline" in capsys.readouterr().err
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", "nanobeir:nosuch") == 2
    assert "is not a NanoBEIR dataset" in capsys.readouterr().err


def test_empty_queries_error(tmp_path):
    with pytest.raises(LeafHubError, match="no queries"):
        build_dataset("x", [{"_id": "a", "text": "x"}], [], [], "x")


def test_cli_qrels_whose_documents_are_all_missing(tmp_path, tiny_teacher_dir, tiny_leaf_dir, capsys):
    """Judged documents none of which is in the corpus are refused, as unknown query ids are (issue 19.10):
    a report of zeros would say nothing about the models."""
    folder = write_beir(
        tmp_path / "foreign",
        [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}],
        [{"_id": "1", "text": "q"}, {"_id": "2", "text": "r"}],
        [("1", "d7", 1), ("2", "d8", 2)],
    )
    with pytest.raises(LeafHubError, match="no judged document of the qrels is in the corpus"):
        load_beir_folder(folder)
    assert _evaluate(tmp_path, tiny_teacher_dir, tiny_leaf_dir, "--retrieval", str(folder)) == 2
    err = capsys.readouterr().err
    assert "no judged document" in err and "d7" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "report.json").exists()
    # One judged document in the corpus is enough: the others are counted and warned about, as before.
    write_beir(folder, [{"_id": "a", "text": "x"}, {"_id": "d7", "text": "y"}], [{"_id": "1", "text": "q"},
               {"_id": "2", "text": "r"}], [("1", "d7", 1), ("2", "d8", 2)])  # fmt: skip
    assert load_beir_folder(folder).stats["qrels_docs_missing"] == 1
