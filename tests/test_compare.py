"""The Space's computations (leaf_hub.space.compare) on the tiny teacher and leaf, checked against
SentenceTransformer.similarity, sentence-transformers' quantize_embeddings and scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer, quantize_embeddings

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError
from leaf_hub.space import compare as C

QUERY = "which city has the best music"
DOCS = [
    "the city is known for its music and history",
    "a small red car was parked by the old tree",
    "water and fire are not the same",
    "the library has many books about music",
    "dog",
]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return SentenceTransformer(str(tiny_teacher_dir), device="cpu")


@pytest.fixture(scope="module")
def leaf(tiny_leaf_dir):
    return SentenceTransformer(str(tiny_leaf_dir), device="cpu")


@pytest.fixture(scope="module")
def embedded(teacher, leaf):
    return C.embed_comparison(teacher, leaf, QUERY, DOCS)


def close_to_shown(shown: float, expected: float) -> bool:
    """A score rounded to DECIMALS for display equals the float it came from, within half a unit."""
    return abs(shown - expected) <= 0.5 * 10**-C.DECIMALS + 1e-7


# ------------------------------------------------------------------------------------------- inputs
def test_parse_documents_splits_lines_and_drops_blanks():
    assert C.parse_documents("  a  \n\n b\r\nc \n") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no documents"),
        ("\n  \n", "no documents"),
        ("\n".join(f"doc {i}" for i in range(C.MAX_DOCUMENTS + 1)), f"at most {C.MAX_DOCUMENTS}"),
        ("short\n" + "x" * (C.MAX_CHARS + 1), f"document 2 has {C.MAX_CHARS + 1} characters"),
    ],
)
def test_parse_documents_bounds(text, message):
    with pytest.raises(LeafHubError, match=message):
        C.parse_documents(text)


def test_exactly_the_bounds_pass():
    docs = C.parse_documents("\n".join("y" * C.MAX_CHARS for _ in range(C.MAX_DOCUMENTS)))
    assert len(docs) == C.MAX_DOCUMENTS
    assert C.check_text("q" * C.MAX_CHARS, "query") == "q" * C.MAX_CHARS


def test_query_bounds():
    with pytest.raises(LeafHubError, match="query is empty"):
        C.check_text("   ", "query")
    with pytest.raises(LeafHubError, match=f"at most {C.MAX_CHARS}"):
        C.check_text("q" * (C.MAX_CHARS + 1), "query")


def test_view_bounds():
    assert C.check_view(None, None, 48) == (48, "none")
    assert C.check_view(16.0, "binary", 48) == (16, "binary")
    with pytest.raises(LeafHubError, match="between 1 and 48"):
        C.check_view(64, "none", 48)
    with pytest.raises(LeafHubError, match="precision must be one of"):
        C.check_view(48, "int4", 48)


def test_leaf_of_another_teacher_is_refused(teacher, tiny_student_dir):
    student = SentenceTransformer(str(tiny_student_dir), device="cpu")  # 32-d, not in the teacher's space
    with pytest.raises(LeafHubError, match="not a leaf of this teacher"):
        C.check_models(teacher, student)


# ------------------------------------------------------------------------------------------- scores
def test_scores_equal_sentence_transformers_similarity(teacher, leaf):
    table = C.compare(teacher, leaf, QUERY, "\n".join(DOCS))
    q_t, d_t = teacher.encode_query([QUERY]), teacher.encode_document(DOCS)
    q_l, d_l = leaf.encode_query([QUERY]), leaf.encode_document(DOCS)
    expected = {
        "teacher": teacher.similarity(q_t, d_t)[0].tolist(),
        "leaf": leaf.similarity(q_l, d_l)[0].tolist(),
        "asymmetric": teacher.similarity(q_l, d_t)[0].tolist(),
    }
    assert table.headers == C.TABLE_HEADERS
    assert [row[1] for row in table.rows] == DOCS
    for name, column in (("teacher", 2), ("leaf", 4), ("asymmetric", 6)):
        shown = [row[column] for row in table.rows]
        assert all(close_to_shown(s, e) for s, e in zip(shown, expected[name], strict=True)), name
        assert [row[column] for row in table.rows] == [round(e, C.DECIMALS) for e in table.scores[name]]
        # Ranks: 1 for the highest score.
        order = np.argsort(-np.asarray(expected[name]), kind="stable")
        assert [table.rows[i][column + 1] for i in order] == list(range(1, len(DOCS) + 1))
    # The teacher applies its query prompt: without it the teacher's query embedding differs.
    assert not np.allclose(q_t, teacher.encode_document([QUERY]))
    assert set(table.seconds) == {"teacher", "leaf"} and all(s > 0 for s in table.seconds.values())


def test_leaf_equal_to_teacher_agrees_perfectly(teacher):
    embedded = C.embed_comparison(teacher, teacher, QUERY, DOCS)
    table = C.score(embedded, teacher, teacher)
    for name in ("leaf", "asymmetric"):
        assert table.agreement[name]["kendall_tau"] == pytest.approx(1.0)
        assert table.agreement[name]["top3_overlap"] == 1.0
        assert table.agreement[name]["same_top1"] == 1.0
    assert "| leaf | 1.000 | 1.000 | yes |" in C.agreement_markdown(table)


def test_agreement_matches_the_table(embedded, teacher, leaf):
    table = C.score(embedded, teacher, leaf)
    scipy_stats = pytest.importorskip("scipy.stats")
    for name in ("leaf", "asymmetric"):
        tau = scipy_stats.kendalltau(table.scores["teacher"], table.scores[name]).statistic
        assert table.agreement[name]["kendall_tau"] == pytest.approx(tau)
    md = C.agreement_markdown(table)
    assert "Kendall τ" in md and "teacher" in md and "ms" in md


@pytest.mark.parametrize(("dim", "precision"), [(16, "none"), (48, "int8"), (24, "int8"), (32, "binary")])
def test_truncated_and_quantized_scores_are_similarity_of_transformed(
    embedded, teacher, leaf, dim, precision
):
    calibration = C.calibration_embeddings(teacher)
    table = C.score(embedded, teacher, leaf, dim, precision, calibration)
    ranges = C.int8_ranges(embedded.docs_teacher, calibration)[:, :dim] if precision == "int8" else None
    q_l = C.transform(embedded.query_leaf, dim, precision, ranges)
    d_t = C.transform(embedded.docs_teacher, dim, precision, ranges)
    assert q_l.shape == (1, dim)
    expected = teacher.similarity(q_l, d_t)[0].tolist()
    assert [row[6] for row in table.rows] == [round(e, C.DECIMALS) for e in expected]
    assert table.dim == dim and table.precision == precision
    full = C.score(embedded, teacher, leaf)
    # Truncation and quantization do change the scores (the view is not ignored).
    assert table.scores["teacher"] != full.scores["teacher"]


def test_transform_truncation_renormalizes(embedded):
    out = C.transform(embedded.docs_teacher, 8, "none")
    assert out.shape == (len(DOCS), 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(C.transform(embedded.docs_teacher, 48, "none"), embedded.docs_teacher)


def test_binary_scores_are_hamming_agreement(embedded, teacher):
    dim = 40
    q = C.transform(embedded.query_teacher, dim, "binary")
    d = C.transform(embedded.docs_teacher, dim, "binary")
    assert set(np.unique(d)) <= {-1.0, 1.0}
    # The +-1 vectors carry exactly the bits sentence-transformers packs.
    bits = np.unpackbits(
        (quantize_embeddings(embedded.docs_teacher[:, :dim], "binary").astype(np.int16) + 128).astype(
            np.uint8
        ),
        axis=-1,
    )[:, :dim]
    np.testing.assert_array_equal(d > 0, bits.astype(bool))
    hamming = ((q > 0) != (d > 0)).sum(axis=1)
    np.testing.assert_allclose(teacher.similarity(q, d)[0].numpy(), 1 - 2 * hamming / dim, atol=1e-6)


def test_int8_round_trip_is_close_and_uses_quantize_embeddings(embedded):
    ranges = C.int8_ranges(embedded.docs_teacher, embedded.query_teacher)
    out = C.transform(embedded.docs_teacher, 48, "int8", ranges)
    step = (ranges[1] - ranges[0]) / 255
    # Reconstruction stays within one bucket of the float value.
    assert np.all(np.abs(out - embedded.docs_teacher) <= step + 1e-6)
    q = quantize_embeddings(embedded.docs_teacher, "int8", ranges=ranges)
    np.testing.assert_allclose(out, (q.astype(np.float32) + 128.5) * step + ranges[0], rtol=1e-6)


def test_pair_similarity_equals_similarity(teacher, leaf):
    s1, s2 = "the cat is on the house", "a dog is in the city"
    sims = C.pair_similarity(teacher, leaf, s1, s2)
    t, lf = teacher.encode([s1, s2]), leaf.encode([s1, s2])
    assert sims["teacher"] == pytest.approx(float(teacher.similarity(t[:1], t[1:])[0, 0]), abs=1e-6)
    assert sims["leaf"] == pytest.approx(float(leaf.similarity(lf[:1], lf[1:])[0, 0]), abs=1e-6)
    assert sims["leaf ↔ teacher"] == pytest.approx(float(teacher.similarity(lf[:1], t[1:])[0, 0]), abs=1e-6)
    with pytest.raises(LeafHubError, match="second sentence is empty"):
        C.pair_similarity(teacher, leaf, s1, "")
    binary = C.pair_similarity(teacher, leaf, s1, s2, 16, "binary")
    # Binary cosine over 16 dimensions is a multiple of 2/16.
    assert (binary["teacher"] * 8) == pytest.approx(round(binary["teacher"] * 8), abs=1e-5)


# -------------------------------------------------------------------------------------- rank helpers
def test_ranks_and_ties():
    assert C.ranks([0.1, 0.9, 0.5]) == [3, 1, 2]
    assert C.ranks([0.5, 0.5, 0.7]) == [2, 3, 1]


def test_kendall_tau_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 4, size=7).astype(float)  # with ties: tau-b
        b = rng.integers(0, 4, size=7).astype(float)
        expected = scipy_stats.kendalltau(a, b).statistic
        got = C.kendall_tau(a, b)
        if np.isnan(expected):
            assert got is None
        else:
            assert got == pytest.approx(expected)
    assert C.kendall_tau([1.0], [2.0]) is None
    assert C.kendall_tau([1.0, 1.0], [1.0, 2.0]) is None


def test_top_k_overlap():
    assert C.top_k_overlap([3, 2, 1, 0], [3, 2, 1, 0], 2) == 1.0
    assert C.top_k_overlap([3, 2, 1, 0], [0, 1, 2, 3], 2) == 0.0
    assert C.top_k_overlap([3, 2, 1, 0], [3, 0, 2, 1], 2) == 0.5
    assert C.top_k_overlap([1.0], [2.0], 3) == 1.0


# ------------------------------------------------------------------------------------------ card facts
EVAL_REPORT = {
    "meta": {"teacher": "t"},
    "results": {
        "teacher": {"cisi": {"ndcg@10": 0.418, "recall@100": 0.5}, "stsb-dev": {"spearman": 0.88}},
        "leaf": {"cisi": {"ndcg@10": 0.39, "recall@100": 0.47}, "stsb-dev": {"spearman": 0.85}},
        "asymmetric": {"cisi": {"ndcg@10": 0.40, "recall@100": 0.48}},
    },
    "mrl_quant": {
        "leaf": {"cisi": {"dim=64": 0.2, "dim=512": 0.38, "dim=128": 0.3, "int8": 0.385, "binary": 0.3}}
    },
}
BENCH_REPORT = {
    "meta": {},
    "results": [],
    "summary": {
        "torch": {"documents_speedup": 5.25, "queries_speedup": 4.5, "max_batch_under_100ms": {}},
        "onnx-int8": {"documents_speedup": 9.0, "queries_speedup": 7.0},
    },
}


def test_reports_make_card_facts(tmp_path, teacher, leaf):
    (tmp_path / "eval_report.json").write_text(json.dumps(EVAL_REPORT))
    (tmp_path / "bench_report.json").write_text(json.dumps(BENCH_REPORT))
    (tmp_path / "leaf_run.json").write_text(
        json.dumps({"teacher": "t", "student": "s", "steps": 7, "validation": {"cosine": 0.91234, "l2": 0.1}})
    )
    reports = C.load_reports(tmp_path)
    facts = C.card_facts(teacher, leaf, reports, "T", "L")
    assert facts["teacher_params"] == sum(p.numel() for p in teacher.parameters())
    assert facts["size_ratio"] == pytest.approx(facts["teacher_params"] / facts["leaf_params"])
    assert facts["speedups"]["torch"] == {"documents_speedup": 5.25, "queries_speedup": 4.5}
    md = C.facts_markdown(facts)
    assert "| torch | 5.2× | 4.5× |" in md and "| onnx-int8 | 9.0× | 7.0× |" in md
    assert "student s" in md and "validation cosine 0.9123" in md

    headers, rows = C.eval_rows(reports["eval_report.json"])
    assert headers == ["task", "metric", "teacher", "leaf", "asymmetric"]
    assert ["cisi", "ndcg@10", 0.418, 0.39, 0.4] in rows
    assert ["stsb-dev", "spearman", 0.88, 0.85, None] in rows
    headers, rows = C.mrl_rows(reports["eval_report.json"])
    assert headers == ["model", "task", "dim=64", "dim=128", "dim=512", "int8", "binary"]
    assert rows == [["leaf", "cisi", 0.2, 0.3, 0.38, 0.385, 0.3]]


def test_missing_and_broken_reports(tmp_path, teacher, leaf):
    reports = C.load_reports(tmp_path)
    assert reports["eval_report.json"] is None and reports["notes"] == []
    (tmp_path / "bench_report.json").write_text("{not json")
    reports = C.load_reports(tmp_path)
    assert reports["bench_report.json"] is None
    assert "bench_report.json could not be read" in reports["notes"][0]
    md = C.facts_markdown(C.card_facts(teacher, leaf, reports))
    assert "No `bench_report.json`" in md and "could not be read" in md
    assert C.eval_rows(None) == (["task", "metric", "teacher", "leaf", "asymmetric"], [])
    assert C.mrl_rows({"results": {}})[1] == []


def test_reports_of_an_unknown_hub_id_are_absent_offline():
    reports = C.load_reports("leaf-hub-tests/no-such-leaf")
    assert all(reports[name] is None for name in C.REPORT_FILES)


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_space_needs_a_teacher(tmp_path, tiny_leaf_dir, capsys):
    assert main(["space", "--leaf", str(tiny_leaf_dir)]) == 2
    assert "pass --teacher" in capsys.readouterr().err


def test_cli_space_missing_leaf(tmp_path, tiny_teacher_dir, capsys):
    assert main(["space", "--leaf", str(tmp_path / "nope"), "--teacher", str(tiny_teacher_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_space_bad_port_and_report_dir(tiny_leaf_dir, tiny_teacher_dir, tmp_path, capsys):
    args = ["space", "--leaf", str(tiny_leaf_dir), "--teacher", str(tiny_teacher_dir)]
    assert main([*args, "--port", "70000"]) == 2
    assert "not a port number" in capsys.readouterr().err
    assert main([*args, "--report-dir", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_cli_space_wrong_teacher(tiny_leaf_dir, tiny_student_dir, capsys):
    assert main(["space", "--leaf", str(tiny_leaf_dir), "--teacher", str(tiny_student_dir)]) == 2
    assert "not a leaf of this teacher" in capsys.readouterr().err


def test_cli_space_takes_the_teacher_from_leaf_run(tiny_leaf_dir, tmp_path, capsys):
    import shutil

    leaf_dir = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, leaf_dir)
    (leaf_dir / "leaf_run.json").write_text(json.dumps({"teacher": str(tmp_path / "gone-teacher")}))
    assert main(["space", "--leaf", str(leaf_dir)]) == 2
    assert "gone-teacher" in capsys.readouterr().err
