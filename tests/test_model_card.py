"""Model and dataset cards rendered from a real tiny leaf / pair / dataset folder and parsed back locally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import DatasetCard, ModelCard

from leaf_hub.cli import main
from leaf_hub.hub.card import CARD_MARKER, render_card

TEACHER = "sentence-transformers/all-mpnet-base-v2"
STUDENT = "sentence-transformers/all-MiniLM-L6-v2"

LEAF_RUN = {
    "teacher": TEACHER,
    "teacher_fingerprint": "0123456789abcdef",
    "student": STUDENT,
    "data": ["../shared/data/train/texts.jsonl.gz", "sentence-transformers/stsb"],
    "num_texts": 12345,
    "steps": 777,
    "epochs": 3.0,
    "batch_size": 32,
    "hardware": "2 CPU cores (test)",
    "wall_time_s": 4321.0,
    "validation": {"l2": 0.2468, "cosine": 0.9357},
    "leaf_hub_version": "0.1.0",
}
EVAL = {
    "meta": {"date": "2025-01-02"},
    "results": {
        "teacher": {"cisi": {"ndcg@10": 0.4183, "recall@100": 0.6123}, "stsb-dev": {"spearman": 0.8821}},
        "leaf": {
            "cisi": {"ndcg@10": 0.3917, "recall@100": 0.5789},
            "stsb-dev": {"spearman": 0.8512},
            "alignment": {"l2": 0.2511, "cosine": 0.9402, "top10_overlap": 0.7133},
        },
        "asymmetric": {"cisi": {"ndcg@10": 0.4071, "recall@100": 0.5999}},
    },
    "mrl_quant": {"leaf": {"cisi": {"dim=128": 0.3611, "dim=64": 0.3302, "binary": 0.3011, "int8": 0.3877}}},
}
BENCH = {
    "meta": {"cpu": "AMD EPYC (test)", "cores": 2, "threads": 1, "max_seq_length": 384, "batching": "sorted"},
    "results": [
        {"model": "teacher", "backend": "torch", "kind": "queries", "batch_size": 32, "throughput": 11.25,
         "min_latency_ms": 88.5, "median_latency_ms": 91.5},
        {"model": "leaf", "backend": "onnx", "kind": "queries", "batch_size": 32, "throughput": 141.75,
         "min_latency_ms": 7.25, "median_latency_ms": 7.75},
    ],
    "summary": {"onnx": {"documents_speedup": 6.4, "queries_speedup": 12.6, "max_batch_under_100ms": {
        "teacher": {"queries": 4, "documents": None}, "leaf": {"queries": 24, "documents": 2}}}},
}  # fmt: skip


@pytest.fixture()
def leaf_dir(tmp_path, tiny_leaf_dir) -> Path:
    folder = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    return folder


def _with_facts(folder: Path) -> Path:
    (folder / "leaf_run.json").write_text(json.dumps(LEAF_RUN))
    (folder / "eval_report.json").write_text(json.dumps(EVAL))
    (folder / "bench_report.json").write_text(json.dumps(BENCH))
    return folder


def test_leaf_card_carries_the_run_facts(leaf_dir, capsys):
    _with_facts(leaf_dir)
    (leaf_dir / "onnx").mkdir()
    (leaf_dir / "onnx" / "model.onnx").write_bytes(b"stand-in: the card only checks that the export exists")
    assert main(["card", "--model", str(leaf_dir), "--repo-id", "tester/tiny-leaf"]) == 0
    assert "wrote the leaf card" in capsys.readouterr().out
    text = (leaf_dir / "README.md").read_text()
    card = ModelCard(text)  # the Hub's own parser: metadata and model-index must be valid
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "sentence-transformers"
    assert data["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "feature-extraction", "knowledge-distillation", "leaf", "onnx"} <= set(
        data["tags"]
    )
    assert data["base_model"] == LEAF_RUN["student"]
    assert data["teacher"] == LEAF_RUN["teacher"]
    assert data["language"] == "en"
    assert data["datasets"] == [
        "sentence-transformers/stsb"
    ]  # Hub ids only; local paths are named in the text
    # model-index: exactly the leaf's retrieval and STS numbers of the report
    got = {r.metric_name: r.metric_value for r in card.data.eval_results}
    want = {
        m: v for task, ms in EVAL["results"]["leaf"].items() if task != "alignment" for m, v in ms.items()
    }
    assert got == want and len(card.data.eval_results) == len(want)
    assert {r.task_type for r in card.data.eval_results} == {"Retrieval", "STS"}
    body = card.text
    assert CARD_MARKER in text
    for value in (LEAF_RUN["steps"], LEAF_RUN["batch_size"], LEAF_RUN["num_texts"]):
        assert f"{value:,}" in body
    assert LEAF_RUN["hardware"] in body and LEAF_RUN["teacher_fingerprint"] in body
    # a local data file by its name only: no local path in a public card (issue 18)
    assert "`texts.jsonl.gz` (local file)" in body and "../shared" not in body
    # results tables hold the report's numbers, standard and asymmetric, with the leaf/teacher ratio
    leaf_ndcg, teacher_ndcg = (
        EVAL["results"]["leaf"]["cisi"]["ndcg@10"],
        EVAL["results"]["teacher"]["cisi"]["ndcg@10"],
    )
    asym_ndcg = EVAL["results"]["asymmetric"]["cisi"]["ndcg@10"]
    row = next(line for line in body.splitlines() if line.startswith("| cisi | ndcg@10 |"))
    for value in (teacher_ndcg, leaf_ndcg, asym_ndcg):
        assert f"{value:.4f}" in row
    assert f"{100 * leaf_ndcg / teacher_ndcg:.1f}%" in row
    mrl_header = next(line for line in body.splitlines() if line.startswith("| Model | Task |"))
    assert (
        mrl_header.index("dim=64")
        < mrl_header.index("dim=128")
        < mrl_header.index("int8")
        < mrl_header.index("binary")
    )
    assert "12.6x" in body and "141.8" in body  # bench summary and rows
    # ... and what they were measured on, from the keys leaf-hub bench writes
    assert (
        "Measured with `leaf-hub bench` on AMD EPYC (test), 1 thread of 2 cores; both models at "
        "max_seq_length 384; batches sorted by length, as `encode` forms them." in body
    )
    assert "| onnx | 6.4x | 12.6x | queries: teacher 4 / leaf 24; documents: teacher none / leaf 2 |" in body
    # usage: every way of running the model, with the repo id
    for snippet in (
        'SentenceTransformer("tester/tiny-leaf")',
        f'SentenceTransformer("{TEACHER}")',
        "encode_query",
        "encode_document",
        "truncate_dim=",
        "quantize_embeddings",
        'precision="int8"',
        'precision="ubinary"',
        "onnx/model.onnx",
        "sentence_embedding",
        "@huggingface/transformers",
    ):
        assert snippet in body, snippet
    assert "## Limitations" in body
    assert (
        "eprint        = {2509.12539}" in body
        and "LEAF: Knowledge Distillation of Text Embedding Models" in body
    )


def test_leaf_card_shows_the_onnx_graphs_quality_next_to_pytorch(leaf_dir):
    """eval_report.onnx-int8.json (evaluate --leaf-backend onnx-int8) becomes a table beside the PyTorch leaf."""
    import copy

    _with_facts(leaf_dir)
    served = copy.deepcopy(EVAL)
    served["meta"] = {**served.get("meta", {}), "backends": {"teacher": "onnx-int8", "leaf": "onnx-int8"}}
    served["results"]["leaf"]["cisi"]["ndcg@10"] = 0.123456
    served["results"]["asymmetric"]["cisi"]["ndcg@10"] = 0.234567
    (leaf_dir / "eval_report.onnx-int8.json").write_text(json.dumps(served))
    body = ModelCard(render_card(leaf_dir)).text
    assert "### The ONNX graphs" in body
    row = next(line for line in body.splitlines() if line.startswith("| `onnx/model_quantized.onnx` (int8)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    pytorch = EVAL["results"]
    assert cells[1:4] == ["int8 graph", "cisi", "ndcg@10"]
    assert cells[4:] == [
        "0.1235", f"{pytorch['leaf']['cisi']['ndcg@10']:.4f}",
        "0.2346", f"{pytorch['asymmetric']['cisi']['ndcg@10']:.4f}",
    ]  # fmt: skip
    # model-index keeps the PyTorch numbers; without the file there is no such section.
    (leaf_dir / "eval_report.onnx-int8.json").unlink()
    assert "### The ONNX graphs" not in render_card(leaf_dir)


def test_leaf_card_without_facts_says_what_is_missing(leaf_dir):
    text = render_card(leaf_dir)
    card = ModelCard(text)
    assert card.data.eval_results is None and card.data.base_model is None
    assert "No `leaf_run.json`" in text
    assert "No evaluation report" in text and "No benchmark report" in text
    assert "%" not in "".join(
        line for line in text.splitlines() if line.startswith("|")
    )  # no invented ratios
    assert "TEACHER-MODEL-ID" in text  # the asymmetric example does not invent a teacher
    assert "has no ONNX export yet" in text


def test_unreadable_reports_are_treated_as_missing(leaf_dir, caplog):
    (leaf_dir / "eval_report.json").write_text("{not json")
    (leaf_dir / "bench_report.json").write_text(json.dumps({"results": "oops", "summary": [1, 2]}))
    (leaf_dir / "leaf_run.json").write_text(json.dumps(["not", "a", "dict"]))
    text = render_card(leaf_dir, "leaf", "tester/x")
    assert "No evaluation report" in text and "No benchmark report" in text and "No `leaf_run.json`" in text
    assert "eval_report.json" in caplog.text  # the unreadable file is named in the log


def test_pair_card(tmp_path, tiny_leaf_dir, tiny_teacher_dir):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Router

    leaf = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    router = Router.for_query_document(query_modules=list(leaf), document_modules=list(teacher))
    folder = tmp_path / "pair"
    SentenceTransformer(modules=[router], prompts={"query": "query: "}, device="cpu").save(str(folder))
    (folder / "leaf_run.json").write_text(json.dumps(LEAF_RUN))
    (folder / "eval_report.json").write_text(json.dumps(EVAL))
    assert main(["card", "--model", str(folder), "--repo-id", "tester/tiny-pair"]) == 0
    card = ModelCard((folder / "README.md").read_text())
    data = card.data.to_dict()
    assert {"asymmetric", "knowledge-distillation"} <= set(data["tags"])
    assert data["base_model"] == [STUDENT, TEACHER] and data["teacher"] == TEACHER
    got = sorted(r.metric_value for r in card.data.eval_results)
    assert got == sorted(EVAL["results"]["asymmetric"]["cisi"].values())  # the pair is scored as asymmetric
    query_line = next(line for line in card.text.splitlines() if line.startswith("| Query side |"))
    doc_line = next(line for line in card.text.splitlines() if line.startswith("| Document side |"))
    assert f"hidden size {leaf[0].get_embedding_dimension()}" in query_line
    assert f"hidden size {teacher[0].get_embedding_dimension()}" in doc_line
    assert "model.encode_query" in card.text and "model.encode_document" in card.text
    # a local data file by its name only, as in a leaf's card (issue 18)
    assert "`texts.jsonl.gz` (local file)" in card.text and "../shared" not in card.text


def test_dataset_cards(tmp_path):
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "vocabulary.parquet").write_bytes(b"")
    build = {"rows": 4321, "words": 999, "failed": 7, "source": "llm", "model": "some-chat-model",
             "prompt": "Terms: {terms}", "words_file": "words.txt", "built": "2025-01-01 00:00 UTC",
             "examples": [{"word": "cat", "text": "A cat | is a small feline."}], "counts": {}}  # fmt: skip
    (vocab / "build.json").write_text(json.dumps(build))
    assert main(["card", "--dataset", str(vocab), "--repo-id", "tester/vocabulary"]) == 0
    card = DatasetCard((vocab / "README.md").read_text())
    data = card.data.to_dict()
    assert data["configs"][0]["data_files"][0]["path"] == "vocabulary.parquet"  # failures.jsonl is not data
    assert data["size_categories"] == ["1K<n<10K"] or data["size_categories"] == "1K<n<10K"
    assert "4,321" in card.text and "999" in card.text and "some-chat-model" in card.text
    assert "A cat \\| is a small feline." in card.text  # table-safe examples
    assert 'load_dataset("tester/vocabulary"' in card.text

    cache = tmp_path / "cache"
    cache.mkdir()
    manifest = {"teacher": TEACHER, "teacher_fingerprint": "feedfacecafebeef", "prompts": {"query": "query: "},
                "dimension": 48, "normalized": True, "dtype": "float16", "rows": 10, "texts_sha256": "ab" * 32,
                "shard_size": 2048, "format_version": 1}  # fmt: skip
    (cache / "manifest.json").write_text(json.dumps(manifest))
    np.savez(cache / "shard-00000.npz", index=np.arange(10), embedding=np.zeros((10, 48), dtype=np.float16))
    assert main(["card", "--dataset", str(cache)]) == 0
    card = DatasetCard((cache / "README.md").read_text())
    assert "teacher-cache" in card.data.to_dict()["tags"]
    for value in (TEACHER, "feedfacecafebeef", "float16", "query: ", "ab" * 32):
        assert value in card.text
    assert "| Embedding shards | 1 |" in card.text


def test_card_cli_errors(tmp_path, leaf_dir, capsys):
    assert main(["card", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["card", "--model", str(empty)]) == 2
    assert "neither a model folder" in capsys.readouterr().err
    assert main(["card", "--dataset", str(leaf_dir)]) == 2
    assert "use --model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "report",
    [
        {"results": {"leaf": {"cisi": 0.5}, "teacher": None}},
        {"results": {"leaf": {"cisi": {"ndcg@10": "high", "recall@100": None}}}, "mrl_quant": [1]},
        {
            "meta": "x",
            "results": {"asymmetric": {"alignment": {"cosine": True}}},
            "mrl_quant": {"leaf": {"t": 3}},
        },
        {"results": []},
    ],
)
def test_malformed_report_shapes_still_render(leaf_dir, report):
    (leaf_dir / "eval_report.json").write_text(json.dumps(report))
    (leaf_dir / "bench_report.json").write_text(
        json.dumps({"results": [{"model": 1}, "x"], "summary": {"onnx": 3}})
    )
    card = ModelCard(render_card(leaf_dir, "leaf", "tester/x"))
    assert card.data.eval_results is None  # nothing numeric and well-formed to index


def test_vocabulary_card_with_odd_build_json(tmp_path):
    folder = tmp_path / "vocab"
    folder.mkdir()
    (folder / "vocabulary.jsonl").write_text("")
    (folder / "build.json").write_text(json.dumps({"counts": [1], "examples": "x", "rows": "many"}))
    card = DatasetCard(render_card(folder))
    assert card.data.to_dict()["configs"][0]["data_files"][0]["path"] == "vocabulary.jsonl"


def test_card_of_a_pair_made_by_leaf_hub_pair_names_its_teacher(tmp_path, tiny_leaf_dir, tiny_teacher_dir):
    import shutil

    leaf = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, leaf)
    (leaf / "leaf_run.json").write_text(json.dumps(LEAF_RUN))
    pair = tmp_path / "pair"
    args = ["pair", "--leaf", str(leaf), "--teacher", str(tiny_teacher_dir), "--output", str(pair), "--force"]
    assert main(args) == 0
    assert not (pair / "leaf_run.json").exists()  # the facts come from the pair's own manifest
    assert main(["card", "--model", str(pair), "--repo-id", "tester/tiny-pair"]) == 0
    text = (pair / "README.md").read_text()
    # the document side actually paired is a local folder: named as such, never by its path (issue 18)
    assert str(tiny_teacher_dir) not in text and "teacher" not in ModelCard(text).data.to_dict()
    args = [
        "card",
        "--model",
        str(pair),
        "--repo-id",
        "tester/tiny-pair",
        "--teacher-repo-id",
        "tester/tiny-teacher",
    ]
    assert main(args) == 0
    card = ModelCard((pair / "README.md").read_text())
    assert card.data.to_dict()["teacher"] == "tester/tiny-teacher"  # the document side actually paired
    assert STUDENT in card.text and "not recorded" not in card.text


def test_local_teacher_and_student_never_reach_the_card_but_their_hub_ids_do(leaf_dir, capsys):
    run = {**LEAF_RUN, "teacher": "/some/folder/mpnet", "student": "./models/minilm"}
    (leaf_dir / "leaf_run.json").write_text(json.dumps(run))
    text = render_card(leaf_dir, "leaf", "tester/x")
    assert "/some/folder" not in text and "./models" not in text and "minilm" not in text.lower()
    card = ModelCard(text)
    assert card.data.base_model is None and "teacher" not in card.data.to_dict()
    assert "a local folder (Hub id not given)" in text and "TEACHER-MODEL-ID" in text
    args = ["card", "--model", str(leaf_dir), "--repo-id", "tester/x", "--teacher-repo-id", TEACHER]
    assert main([*args, "--student-repo-id", STUDENT]) == 0
    card = ModelCard((leaf_dir / "README.md").read_text())
    assert card.data.base_model == STUDENT and card.data.to_dict()["teacher"] == TEACHER
    assert f'SentenceTransformer("{TEACHER}")' in card.text
    # distill can record them (leaf_run.json: teacher_repo_id / student_repo_id)
    recorded = {**run, "teacher_repo_id": TEACHER, "student_repo_id": STUDENT}
    (leaf_dir / "leaf_run.json").write_text(json.dumps(recorded))
    card = ModelCard(render_card(leaf_dir, "leaf", "tester/x"))
    assert card.data.base_model == STUDENT and card.data.to_dict()["teacher"] == TEACHER
    assert main([*args[:5], "--teacher-repo-id", "not a hub id"]) == 2
    assert "is not a Hub id" in capsys.readouterr().err


def test_the_intro_agrees_with_the_results_table(leaf_dir):
    import copy

    _with_facts(leaf_dir)
    text = render_card(leaf_dir, "leaf", "tester/x")  # asymmetric 0.4071 of 0.4183: 97.3%
    assert "retrieval quality is close to the teacher's (97.3% of its ndcg@10 on cisi" in text
    weak = copy.deepcopy(EVAL)
    weak["results"]["asymmetric"]["cisi"]["ndcg@10"] = 0.2798  # 66.9% of the teacher's
    (leaf_dir / "eval_report.json").write_text(json.dumps(weak))
    text = render_card(leaf_dir, "leaf", "tester/x")
    assert "close to the teacher" not in text
    assert "retrieval quality is 66.9% of the teacher's ndcg@10 on cisi" in text
    (leaf_dir / "eval_report.json").unlink()
    assert "close to the teacher" not in render_card(leaf_dir, "leaf", "tester/x")


def test_model_index_names_a_hub_dataset_only_for_tasks_read_from_the_hub(leaf_dir):
    import copy

    _with_facts(leaf_dir)
    report = copy.deepcopy(EVAL)
    report["meta"]["datasets"] = {
        "cisi": {"kind": "retrieval", "source": "../shared/data/eval/cisi"},
        "stsb-dev": {"kind": "sts", "source": "../shared/data/eval/stsb/sts-dev.csv"},
    }
    (leaf_dir / "eval_report.json").write_text(json.dumps(report))
    results = ModelCard(render_card(leaf_dir, "leaf", "tester/x")).data.eval_results
    sts = next(r for r in results if r.task_type == "STS")
    assert sts.dataset_type == "stsb-dev" and sts.dataset_split is None and "local files" in sts.dataset_name
    assert all(r.dataset_type != "sentence-transformers/stsb" for r in results)
    report["meta"]["datasets"]["stsb-dev"]["source"] = "hf:sentence-transformers/stsb:validation"
    (leaf_dir / "eval_report.json").write_text(json.dumps(report))
    results = ModelCard(render_card(leaf_dir, "leaf", "tester/x")).data.eval_results
    sts = next(r for r in results if r.task_type == "STS")
    assert (sts.dataset_type, sts.dataset_split) == ("sentence-transformers/stsb", "validation")


def test_the_card_reads_the_report_bench_wrote_and_keeps_its_caveat(leaf_dir, tmp_path, capsys):
    _with_facts(leaf_dir)
    (leaf_dir / "bench_report.json").unlink()
    elsewhere = tmp_path / "results" / "X.json"  # leaf-hub bench --output X.json
    elsewhere.parent.mkdir()
    busy = {**BENCH, "meta": {**BENCH["meta"], "busy_cores_before": 1.6, "threads": 1, "cores": 2}}
    elsewhere.write_text(json.dumps(busy))
    assert "No benchmark report" in render_card(leaf_dir, "leaf", "tester/x")
    args = ["card", "--model", str(leaf_dir), "--repo-id", "tester/x", "--bench", str(elsewhere)]
    assert main(args) == 0
    body = (leaf_dir / "README.md").read_text()
    assert "12.6x" in body and "No benchmark report" not in body
    assert (
        "**Caveat**: `leaf-hub bench` warned that the machine was busy when it measured (1.6 of 2 cores"
        in body
    )
    elsewhere.write_text(json.dumps(BENCH))  # a quiet machine: no caveat
    assert "Caveat" not in render_card(leaf_dir, "leaf", "tester/x", bench=elsewhere)
    # A report from before --batching says nothing of its batches (they were not sorted then).
    setup = "Measured with `leaf-hub bench` on AMD EPYC (test), 1 thread of 2 cores; both models at max_seq_length 384."
    old = {**BENCH, "meta": {k: v for k, v in BENCH["meta"].items() if k != "batching"}}
    elsewhere.write_text(json.dumps(old))
    assert setup in render_card(leaf_dir, "leaf", "tester/x", bench=elsewhere)
    assert main([*args[:-1], str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _python_blocks(text: str) -> list[str]:
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_each_python_block_of_the_card_runs_when_copied_alone(hub, tmp_path, tiny_leaf_dir, tiny_teacher_dir):
    """Every snippet, pasted alone into a fresh Python, loads the published leaf from the (test) Hub and runs."""
    import os
    import subprocess
    import sys

    from leaf_hub.export.onnx import export_model

    leaf = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, leaf)
    export_model(leaf)
    _with_facts(leaf)
    (leaf / "bench_report.json").unlink()
    teacher_files = {
        str(p.relative_to(tiny_teacher_dir)): p.read_bytes()
        for p in tiny_teacher_dir.rglob("*")
        if p.is_file()
    }
    hub.seed("tester/tiny-teacher", teacher_files)
    args = [
        str(leaf),
        "--repo-id",
        "tester/tiny-leaf",
        "--token",
        hub.token,
        "--teacher-repo-id",
        "tester/tiny-teacher",
    ]
    assert main(["publish", *args]) == 0
    text = hub.files("tester/tiny-leaf")["README.md"].decode()
    assert "leaf-hub pair --leaf tester/tiny-leaf --teacher tester/tiny-teacher --output " in text
    blocks = _python_blocks(text)
    assert len(blocks) == 5
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(
        {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    )
    for block in blocks:
        proc = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, f"{block}\n{proc.stderr[-2000:]}"


def test_the_card_shows_the_figures_of_the_reports_evaluate_and_benchmark_return(
    leaf_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """Reports made by the library (evaluate() -> EvaluationReport, benchmark() -> BenchReport), written as
    JSON and read back (to_json / from_json), give a card that shows their figures."""
    from eval_helpers import synthetic_beir, write_sts_plain

    from leaf_hub import BenchReport, EvaluationReport, benchmark, evaluate

    monkeypatch.setenv("LEAF_HUB_CACHE", str(tmp_path / "cache"))
    (leaf_dir / "leaf_run.json").write_text(json.dumps(LEAF_RUN))
    report = evaluate(
        leaf=str(leaf_dir), teacher=str(tiny_teacher_dir), retrieval=[str(synthetic_beir(tmp_path / "syn"))],
        sts=str(write_sts_plain(tmp_path / "pairs.tsv", n=40)), dims="16,32", output=tmp_path / "report.json",
        plots=False, batch_size=8,
    )  # fmt: skip
    saved = EvaluationReport.read(leaf_dir / "eval_report.json")  # evaluate() saves its report to the leaf
    assert saved.to_json() == report.to_json()
    bench = benchmark(
        leaf=str(leaf_dir), teacher=str(tiny_teacher_dir), backends="torch", batch_sizes=[1, 4], repeats=2,
        max_seq_length=32, threads=1, output=tmp_path / "bench" / "bench.json",
        queries=[f"query number {i}" for i in range(8)],
        documents=[f"a somewhat longer document, number {i}, about leaves" for i in range(8)],
    )  # fmt: skip
    assert BenchReport.read(tmp_path / "bench" / "bench.json").to_json() == bench.to_json()

    text = render_card(leaf_dir, "leaf", "tester/x", bench=tmp_path / "bench" / "bench.json")
    card = ModelCard(text)
    body = card.text
    # Every score of every mode, in the row of its task and metric, with the leaf's share of the teacher's.
    for task in report.retrieval + report.sts:
        for metric in task.scores["teacher"].to_json():
            row = next(line for line in body.splitlines() if line.startswith(f"| {task.name} | {metric} |"))
            for mode in ("teacher", "leaf", "asymmetric"):
                assert f" {report.score(mode, task.name, metric):.4f} |" in row, (mode, row)
            share = report.score("leaf", task.name, metric) / report.score("teacher", task.name, metric)
            assert f"{100 * share:.1f}%" in row
    alignment = next(line for line in body.splitlines() if line.startswith("| l2 |"))
    assert f"{report.alignment.scores['leaf'].l2:.4f}" in alignment
    mrl = next(line for line in body.splitlines() if line.startswith("| leaf | syn |"))
    variants = report.retrieval[0].mrl_quant["leaf"]
    figures = [*(variants.dims[d] for d in sorted(variants.dims)), variants.int8, variants.binary]
    assert [f"{v:.4f}" for v in figures] == [c.strip() for c in mrl.strip("|").split("|")[2:]]
    # The model-index holds the leaf's retrieval and STS figures, named by task (local files).
    indexed = {(r.dataset_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert indexed == {
        (t.name, m): v
        for t in report.retrieval + report.sts
        for m, v in t.scores["leaf"].to_json().items()
        if m != "top10_overlap"
    }
    # The speed section: the summary's speed-ups, every timed cell, and the machine it ran on.
    summary = bench.summary["torch"]
    assert f"| torch | {summary.documents_speedup:.1f}x | {summary.queries_speedup:.1f}x |" in body
    for cell in bench.results:
        assert (
            f"| {cell.model} | torch | {cell.kind} | {cell.batch_size} | {cell.throughput:.1f} | "
            f"{cell.median_latency_ms:.2f} | {cell.min_latency_ms:.2f} |" in body
        )
    assert f"Measured with `leaf-hub bench` on {bench.meta.hardware.describe()}" in body
    # Report objects written again (from_json of to_json) give the same card.
    again = tmp_path / "again"
    shutil.copytree(leaf_dir, again)
    EvaluationReport.from_json(report.to_json()).write(again / "eval_report.json", plots=False)
    BenchReport.from_json(bench.to_json()).write(tmp_path / "again-bench" / "bench.json")
    assert render_card(again, "leaf", "tester/x", bench=tmp_path / "again-bench" / "bench.json") == text


def test_an_older_leaf_run_json_still_gives_a_card(leaf_dir):
    """leaf_run.json files of earlier versions (or the facts a hand-made leaf carries) lack newer keys: the
    card shows what they have and says "–" / "not recorded" for the rest."""
    from leaf_hub import DistillResult

    full = DistillResult.from_json(LEAF_RUN).to_json()
    assert "teacher_repo_id" not in full  # the optional Hub ids are written only when set
    older = {k: LEAF_RUN[k] for k in ("teacher", "student", "data", "steps", "epochs", "batch_size")}
    (leaf_dir / "leaf_run.json").write_text(json.dumps({**older, "some_later_key": {"x": 1}}))
    facts = DistillResult.read(leaf_dir)
    assert (facts.steps, facts.validation, facts.num_texts, facts.teacher_repo_id) == (777, None, None, None)
    text = render_card(leaf_dir, "leaf", "tester/x")
    card = ModelCard(text)
    assert card.data.base_model == STUDENT and card.data.to_dict()["teacher"] == TEACHER
    assert "- **Training**: 777 steps, 3.00 epochs, batch size 32" in text
    assert "- **Hardware**: not recorded" in text and "- **Wall time**: –" in text
    assert "Held-out alignment" not in text and "weights fingerprint" not in text and "texts)" not in text
    assert "No `leaf_run.json`" not in text
    # A validation entry without both numbers is no score (rather than a crash).
    (leaf_dir / "leaf_run.json").write_text(json.dumps({**older, "validation": {"l2": 0.5}}))
    assert "Held-out alignment" not in render_card(leaf_dir, "leaf", "tester/x")


def test_the_card_says_how_many_texts_were_cut_or_left_out(leaf_dir):
    """leaf_run.json's token report (issue 19 items 6 and 11) reaches the card; runs without one show no line."""
    from leaf_hub.data.tokens import TokenReport

    tokens = {
        "max_length": 128,
        "truncated": {"document": 3},
        "unreadable": {"query": 2},
        "longest_tokens": 40000,
    }
    (leaf_dir / "leaf_run.json").write_text(json.dumps({**LEAF_RUN, "tokens": tokens}))
    text = render_card(leaf_dir, "leaf", "tester/x")
    line = next(line for line in text.splitlines() if line.startswith("- **Tokens**: "))
    assert line == f"- **Tokens**: {TokenReport(**tokens).describe()}"
    assert (
        "3 texts longer than 128 tokens were cut to their first 128 (the longest had 40,000); 2 texts" in line
    )
    (leaf_dir / "leaf_run.json").write_text(json.dumps({**LEAF_RUN, "tokens": None}))
    assert "**Tokens**" not in render_card(leaf_dir, "leaf", "tester/x")
