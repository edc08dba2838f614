"""``leaf-hub bench``: the report's structure and internal consistency (speed is measured in bench/, not here)."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import pytest

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.benchmark import (
    KINDS,
    MODELS,
    BenchConfig,
    _batches,
    _Models,
    _pool,
    busy_cores,
    call_order,
    default_texts,
    read_texts,
    summarize,
    to_markdown,
)

BATCH_SIZES = [1, 2, 4]
BACKENDS = ["torch", "onnx", "onnx-int8"]


@pytest.fixture(scope="module")
def text_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("texts")
    queries = folder / "queries.txt"
    queries.write_text("what is a leaf\nhow fast is the teacher\n\nwhy embed documents once\n")
    documents = folder / "documents.jsonl"
    rows = [
        {"title": "Leaf", "text": "A small model aligned to a large teacher."},
        {"text": "Documents are embedded once with the teacher and stored in a vector index."},
        {"title": "Queries", "text": "Queries arrive one at a time and need low latency. " * 8},
    ]
    documents.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return queries, documents


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_leaf_dir, tiny_teacher_dir, text_files):
    folder = tmp_path_factory.mktemp("bench")
    cache = folder / "cache"
    output = folder / "out" / "bench.json"
    queries, documents = text_files
    args = [
        "bench",
        "--leaf",
        str(tiny_leaf_dir),
        "--teacher",
        str(tiny_teacher_dir),
        "--backends",
        ",".join(BACKENDS),
        "--queries",
        str(queries),
        "--documents",
        str(documents),
        "--batch-sizes",
        ",".join(map(str, BATCH_SIZES)),
        "--repeats",
        "3",
        "--max-seq-length",
        "32",
        "--threads",
        "1",
        "--onnx-cache",
        str(cache),
        "--output",
        str(output),
    ]
    import torch

    threads = torch.get_num_threads()
    assert main(args) == 0
    assert torch.get_num_threads() == threads  # --threads 1 timed the models; the caller's setting is back
    return output, cache


def test_report_files_are_written(bench_run, capsys):
    output, _ = bench_run
    md, png = output.with_suffix(".md"), output.with_suffix(".png")
    assert output.is_file() and md.is_file() and png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(str(png))
    assert image.shape[0] > 300 and image.shape[1] > 600  # 2 rows (kinds) x 3 columns (backends)
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_results_are_complete_and_consistent(bench_run, tiny_leaf_dir, tiny_teacher_dir):
    report = json.loads(bench_run[0].read_text())
    meta, results = report["meta"], report["results"]
    assert meta["max_seq_length"] == 32 and meta["threads"] == 1 and meta["repeats"] == 3
    assert meta["leaf"] == str(tiny_leaf_dir) and meta["teacher"] == str(tiny_teacher_dir)  # outside the cwd
    assert meta["interleave"] == "repeat" and "interleaved per repeat" in meta["protocol"]
    assert meta["batching"] == "sorted" and "sorted by length, longest first" in meta["protocol"]
    # The model card words the setup from these keys.
    from leaf_hub.hub.card import bench_setup

    assert bench_setup(meta) == (
        f"{meta['cpu']}, 1 thread of {meta['cores']} cores; both models at max_seq_length 32; "
        "batches sorted by length, as `encode` forms them"
    )
    # One thread per model: the tokenizer kept to one too (unless the user's environment says otherwise).
    assert meta["tokenizer_parallelism"] == os.environ.get(
        "TOKENIZERS_PARALLELISM", "true" if (os.cpu_count() or 1) <= 1 else "false"
    )
    assert meta["busy_cores_before"] is None or 0 <= meta["busy_cores_before"] <= (os.cpu_count() or 1)
    assert meta["model_max_seq_length"] == {"teacher": 64, "leaf": 64}
    assert meta["texts"]["queries"]["count"] == 3 and meta["texts"]["documents"]["count"] == 3
    assert meta["batch_sizes"] == BATCH_SIZES and meta["backends"] == BACKENDS
    assert len(results) == len(BACKENDS) * len(KINDS) * len(BATCH_SIZES) * len(MODELS)
    cells = {(r["model"], r["backend"], r["kind"], r["batch_size"]) for r in results}
    assert len(cells) == len(results)
    assert meta["pool_size"] == max(BATCH_SIZES)
    for r in results:
        # Every batch size times the same pool: 4 texts as 4, 2 or 1 full batches per repeat.
        assert r["repeats"] == len(r["repeat_seconds"]) == 3 and r["texts_per_repeat"] == 4
        assert len(r["latencies_ms"]) == 3 * (4 // r["batch_size"])
        assert r["min_latency_ms"] == pytest.approx(min(r["latencies_ms"]), abs=1e-3)
        assert r["min_latency_ms"] <= r["median_latency_ms"] <= max(r["latencies_ms"]) + 1e-3
        # A repeat's time is the sum of its calls' latencies (stored rounded to the microsecond: a tiny
        # model's 0.1 ms calls need that rounding in the tolerance).
        rounding_ms = 5e-4 * len(r["latencies_ms"])
        assert sum(r["repeat_seconds"]) * 1000 == pytest.approx(
            sum(r["latencies_ms"]), rel=1e-3, abs=rounding_ms
        )
        assert r["throughput"] == pytest.approx(4 / sorted(r["repeat_seconds"])[1], rel=1e-4)

    for backend in BACKENDS:
        s = report["summary"][backend]
        for kind in KINDS:
            rows = {
                (r["model"], r["batch_size"]): r
                for r in results
                if r["backend"] == backend and r["kind"] == kind
            }
            peak = {m: max(rows[(m, b)]["throughput"] for b in BATCH_SIZES) for m in MODELS}
            assert s["peak_throughput"]["leaf"][kind] == pytest.approx(peak["leaf"])
            assert s[f"{kind}_speedup"] == pytest.approx(peak["leaf"] / peak["teacher"])
            for b in BATCH_SIZES:
                ratio = rows[("leaf", b)]["throughput"] / rows[("teacher", b)]["throughput"]
                assert s["speedup_by_batch_size"][kind][str(b)] == pytest.approx(ratio)
                teacher_s, leaf_s = (
                    rows[("teacher", b)]["repeat_seconds"],
                    rows[("leaf", b)]["repeat_seconds"],
                )
                per_repeat = [t / lf for t, lf in zip(teacher_s, leaf_s, strict=True)]
                low, high = s["speedup_range_by_batch_size"][kind][str(b)]
                assert (low, high) == pytest.approx((min(per_repeat), max(per_repeat)), rel=1e-4)
            for m in MODELS:
                under = [b for b in BATCH_SIZES if rows[(m, b)]["median_latency_ms"] < 100]
                assert s["max_batch_under_100ms"][m][kind] == (max(under) if under else None)

    md = bench_run[0].with_suffix(".md").read_text()
    for backend in BACKENDS:
        assert f"## {backend}, queries" in md and f"## {backend}, documents" in md
        assert f"{report['summary'][backend]['queries_speedup']:.1f}x" in md


def test_one_kind_only(tmp_path, tiny_leaf_dir, tiny_teacher_dir, text_files):
    output = tmp_path / "q.json"
    args = ["bench", "--leaf", str(tiny_leaf_dir), "--teacher", str(tiny_teacher_dir), "--kinds", "queries"]
    args += ["--queries", str(text_files[0]), "--documents", str(text_files[1]), "--backends", "torch"]
    args += ["--batch-sizes", "1,2", "--repeats", "1", "--threads", "1", "--output", str(output)]
    assert main(args) == 0
    report = json.loads(output.read_text())
    assert {r["kind"] for r in report["results"]} == {"queries"} and report["meta"]["kinds"] == ["queries"]
    s = report["summary"]["torch"]
    assert s["queries_speedup"] > 0 and s["documents_speedup"] is None
    md = output.with_suffix(".md").read_text()
    assert "## torch, queries" in md and "## torch, documents" not in md
    assert output.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_onnx_models_were_exported_into_the_cache_not_the_model_folders(
    bench_run, tiny_leaf_dir, tiny_teacher_dir
):
    _, cache = bench_run
    exported = sorted(p.name for p in cache.iterdir())
    assert len(exported) == 2 and not [n for n in exported if n.startswith(".")]
    for folder in cache.iterdir():
        assert (folder / "onnx" / "model.onnx").is_file()
        assert (folder / "onnx" / "model_quantized.onnx").is_file()
        # Exported at the model's own length, not at the benchmark's --max-seq-length 32.
        assert json.loads((folder / "onnx" / "export.json").read_text())["max_seq_length"] == 64
    assert not (Path(tiny_leaf_dir) / "onnx").exists() and not (Path(tiny_teacher_dir) / "onnx").exists()


def test_onnx_sessions_do_not_spin_when_loaded_together(bench_run, tiny_leaf_dir, tiny_teacher_dir):
    # Idle workers spinning in one session would take the cores from the other.
    _, cache = bench_run
    models = _Models({"teacher": str(tiny_teacher_dir), "leaf": str(tiny_leaf_dir)}, 2, str(cache))
    for role in MODELS:
        options = models.runner(role, "onnx").owner.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.intra_op_num_threads == 2


@pytest.mark.parametrize("interleave", ["repeat", "batch"])
def test_each_turn_has_the_process_to_itself(
    interleave, bench_run, tiny_leaf_dir, tiny_teacher_dir, text_files, monkeypatch
):
    """Per-repeat turns: a fresh spinning session per turn, alone; per-batch: both loaded, not spinning."""
    import weakref

    from leaf_hub.evaluation import benchmark as bench

    _, cache = bench_run
    alive: weakref.WeakSet = weakref.WeakSet()
    made, timed = [], []
    original = bench._Models.runner

    def runner(self, role, backend, allow_spinning=False):
        made.append((role, allow_spinning))
        result = original(self, role, backend, allow_spinning)
        alive.add(result.owner)
        calls = dict(result._encode)

        def encode(kind, texts, role=role, spinning=allow_spinning):
            timed.append((role, len(alive), spinning))
            calls[kind](texts)

        result.encode = encode
        return result

    monkeypatch.setattr(bench._Models, "runner", runner)
    queries = read_texts(text_files[0])
    report = bench.benchmark(
        BenchConfig(str(tiny_leaf_dir), str(tiny_teacher_dir), backends=["onnx"], batch_sizes=[1, 3], repeats=2,
                    threads=2, onnx_cache=str(cache), interleave=interleave, output=None),
        queries=queries, documents=queries,
    )  # fmt: skip
    assert len(report.results) == 8
    if interleave == "repeat":
        # 2 sessions to read the models' limits, then one per turn: 2 kinds x 2 sizes x 2 repeats x 2 models.
        assert len(made) == 2 + 16 and all(spinning for _, spinning in made[2:])
        assert {(n, spinning) for _, n, spinning in timed} == {(1, True)}
    else:
        assert len(made) == 2 and {(n, spinning) for _, n, spinning in timed} == {(2, False)}
    # Every timed call (plus warm-ups) went to a model of the turn's role.
    assert {role for role, _, _ in timed} == set(MODELS)


def test_reports_show_model_folders_under_the_working_directory_relative(tmp_path, monkeypatch):
    from leaf_hub.evaluation.benchmark import _shown_path

    (tmp_path / "runs" / "leaf").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert _shown_path(tmp_path / "runs" / "leaf") == str(Path("runs") / "leaf")
    assert _shown_path("runs/leaf") == "runs/leaf"
    assert _shown_path("/nonexistent/leaf") == "/nonexistent/leaf"
    assert _shown_path("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


def test_tokenizer_parallelism_is_set_for_the_run_and_restored(monkeypatch):
    from leaf_hub.evaluation.benchmark import _tokenizer_parallelism

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    with _tokenizer_parallelism(False):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert "TOKENIZERS_PARALLELISM" not in os.environ
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the user's choice wins
    with _tokenizer_parallelism(False):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_every_batch_size_times_the_same_pool_of_texts():
    texts = [f"text {i}" + " word" * (i % 4) for i in range(10)]
    pool = _pool(texts, 24)
    assert pool == _pool(texts, 24) and len(pool) == 24  # seeded; cycles through the 10 texts
    assert sorted(set(pool)) == sorted(texts) and pool[:10] != texts  # shuffled, all texts present
    by_length = sorted(pool, key=len, reverse=True)
    assert by_length != pool
    for b in (1, 2, 4, 8, 16, 24):
        for batching, order in (("arrival", pool), ("sorted", by_length)):
            batches = _batches(pool, b, batching)
            # Arrival: the pool's own order; sorted: longest first, the order encode batches a list in.
            assert [t for batch in batches for t in batch] == order
            assert all(len(batch) == b for batch in batches[:-1]) and 0 < len(batches[-1]) <= b
    assert _batches(pool, 8) == _batches(pool, 8, "sorted")  # the default
    with pytest.raises(LeafHubError, match="unknown --batching 'random'; choose from sorted, arrival"):
        _batches(pool, 8, "random")
    assert _pool(texts, 4, seed=1) != _pool(texts, 4, seed=2)


@pytest.mark.parametrize("batching", ["sorted", "arrival"])
def test_the_models_encode_the_batches_of_the_chosen_order(
    batching, tiny_leaf_dir, tiny_teacher_dir, monkeypatch
):
    """Both models get the same batches: length-sorted (as encode forms them) or in arrival order."""
    from leaf_hub.evaluation import benchmark as bench

    texts = ["a b c d e f g h", "a", "a b c d", "a b", "a b c d e f", "a b c"]
    pool = _pool(texts, 6)
    assert pool != sorted(pool, key=len, reverse=True)  # so the two orders differ
    seen: dict[str, list[list[str]]] = {"teacher": [], "leaf": []}
    original = bench._Models.runner

    def runner(self, role, backend, allow_spinning=False):
        result = original(self, role, backend, allow_spinning)
        calls = dict(result._encode)

        def encode(kind, batch, role=role):
            seen[role].append(list(batch))
            calls[kind](batch)

        result.encode = encode
        return result

    monkeypatch.setattr(bench._Models, "runner", runner)
    report = bench.benchmark(
        BenchConfig(str(tiny_leaf_dir), str(tiny_teacher_dir), backends=["torch"], batch_sizes=[2], repeats=1,
                    threads=1, pool_size=6, kinds=["queries"], batching=batching, output=None),
        queries=texts, documents=texts,
    )  # fmt: skip
    order = sorted(pool, key=len, reverse=True) if batching == "sorted" else pool
    expected = [order[0:2], order[2:4], order[4:6]]
    warm_up = [texts[:4]]  # untimed, before the timed batches
    assert seen["teacher"] == seen["leaf"] == warm_up + expected
    assert report.meta.batching == batching
    assert ("sorted by length" in report.meta.protocol) == (batching == "sorted")
    with pytest.raises(LeafHubError, match="batching is one of sorted, arrival"):
        bench.benchmark(leaf=str(tiny_leaf_dir), teacher=str(tiny_teacher_dir), batching="by-size")


def test_models_take_turns_per_repeat_or_per_batch():
    # Per repeat (default): one model encodes the whole pool, then the other; who starts alternates.
    calls = call_order(n_batches=3, repeats=2)
    assert calls == [(0, "teacher", i) for i in range(3)] + [(0, "leaf", i) for i in range(3)] + [
        (1, "leaf", i) for i in range(3)
    ] + [(1, "teacher", i) for i in range(3)]
    # Per batch: the models alternate after every call, the first of each pair alternating too.
    calls = call_order(n_batches=2, repeats=2, interleave="batch")
    assert [(r, m) for r, m, _ in calls] == [
        (0, "teacher"), (0, "leaf"), (0, "leaf"), (0, "teacher"),
        (1, "leaf"), (1, "teacher"), (1, "teacher"), (1, "leaf"),
    ]  # fmt: skip
    for interleave in ("repeat", "batch"):  # every (repeat, model, batch) timed exactly once
        calls = call_order(4, 3, interleave)
        assert sorted(calls) == sorted({(r, m, i) for r in range(3) for m in MODELS for i in range(4)})
    with pytest.raises(LeafHubError, match="interleave"):
        call_order(2, 1, "model")


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads Linux /proc/stat")
def test_busy_cores_sees_another_process_burning_a_core():
    import subprocess
    import sys

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = busy_cores(1.0)
    finally:
        burner.kill()
        burner.wait()
    assert busy is not None and 0.7 <= busy <= (os.cpu_count() or 1) + 0.01


def test_summarize_on_known_numbers():
    def row(model, kind, b, median_ms):
        return {
            "model": model,
            "backend": "onnx",
            "kind": kind,
            "batch_size": b,
            "throughput": b / median_ms * 1000,
            "min_latency_ms": median_ms,
            "median_latency_ms": median_ms,
        }

    rows = [
        row("teacher", "queries", 1, 50),
        row("teacher", "queries", 8, 200),  # 40/s peak
        row("leaf", "queries", 1, 10),
        row("leaf", "queries", 8, 25),  # 320/s peak
        row("teacher", "documents", 1, 400),
        row("teacher", "documents", 8, 1600),  # 5/s
        row("leaf", "documents", 1, 60),
        row("leaf", "documents", 8, 200),  # 40/s
    ]
    s = summarize(rows)["onnx"]
    assert s.queries_speedup == pytest.approx(8.0)
    assert s.documents_speedup == pytest.approx(8.0)
    assert s.speedup_by_batch_size["queries"] == {"1": pytest.approx(5.0), "8": pytest.approx(8.0)}
    assert s.max_batch_under_100ms == {
        "teacher": {"queries": 1, "documents": None},
        "leaf": {"queries": 8, "documents": 1},
    }
    report = {
        "meta": {
            "leaf": "l",
            "teacher": "t",
            "cpu": "cpu",
            "cores": 2,
            "threads": 2,
            "max_seq_length": 128,
            "repeats": 1,
            "protocol": "p",
            "texts": {"queries": {"source": "q", "count": 2}, "documents": {"source": "d", "count": 2}},
        },
        "results": rows,
        "summary": {"onnx": s.to_json()},
    }
    md = to_markdown(report)
    assert "| onnx | 8.0x | 8.0x | 1 / 8 | - / 1 |" in md
    assert "| 8 | 40.0 | 320.0 | 8.0x | 200 / 200 | 25 / 25 |" in md


def test_read_texts_formats(tmp_path, text_files):
    queries, documents = text_files
    assert read_texts(queries) == ["what is a leaf", "how fast is the teacher", "why embed documents once"]
    docs = read_texts(documents)
    assert docs[0] == "Leaf A small model aligned to a large teacher." and len(docs) == 3
    gz = tmp_path / "t.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(json.dumps({"text": "zipped"}) + "\n")
    assert read_texts(gz) == ["zipped"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(LeafHubError, match="bad.jsonl:2 has no 'text' field"):
        read_texts(bad)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(LeafHubError, match="contains no texts"):
        read_texts(tmp_path / "empty.txt")


def test_default_texts_are_the_packages_own(shared_data):
    """The shipped package never looks outside itself: with ../shared beside the checkout (this fixture), the
    defaults are still the built-in corpus; a caller (bench/inference.py) passes such files explicitly."""
    queries, documents, sources = default_texts()
    assert "builtin_corpus" in sources["queries"] and "builtin_corpus" in sources["documents"]
    assert "shared" not in " ".join(sources.values())
    assert len(queries) > 100 and len(documents) > 100
    assert min(len(d.split()) for d in documents) >= 30
    assert sum(len(q.split()) for q in queries) / len(queries) < 15  # queries are short
    assert all(isinstance(t, str) and t for t in queries + documents)
    cisi = shared_data / "eval" / "cisi"
    q, d, given = default_texts(cisi / "queries.jsonl", cisi / "corpus.jsonl")
    assert len(q) == 112 and len(d) == 1460 and given["queries"] == str(cisi / "queries.jsonl")
    assert not math.isnan(sum(len(t) for t in d))


def test_cli_errors(tmp_path, capsys, tiny_leaf_dir, tiny_teacher_dir, text_files):
    queries, documents = text_files
    base = [
        "bench",
        "--leaf",
        str(tiny_leaf_dir),
        "--teacher",
        str(tiny_teacher_dir),
        "--output",
        str(tmp_path / "b.json"),
    ]
    assert (
        main(
            [*base, "--backends", "torch,tensorrt", "--queries", str(queries), "--documents", str(documents)]
        )
        == 2
    )
    assert "unknown backend(s) ['tensorrt']" in capsys.readouterr().err
    assert main([*base, "--queries", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main([*base, "--repeats", "0", "--queries", str(queries), "--documents", str(documents)]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err
    files = ["--queries", str(queries), "--documents", str(documents)]
    assert main([*base, "--batch-sizes", "1,8", "--pool", "4", *files]) == 2
    assert "--pool 4 is smaller than the largest batch size 8" in capsys.readouterr().err
    assert main([*base, "--kinds", "queries,docs", *files]) == 2
    assert "unknown kind(s) of text ['queries', 'docs']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--batching", "random", *files])
    assert exc.value.code == 2
    assert "--batching: invalid choice: 'random'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--batch-sizes", "1,two"])
    assert exc.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_deployment_ratios_int8_leaf_against_fp32_teacher(bench_run, text_files):
    """With both ONNX Runtime backends timed, the report adds the int8 leaf against the fp32 teacher, with the
    cosine of the int8 leaf's embeddings to its fp32 self, for queries and documents (issue 20)."""
    import numpy as np

    from leaf_hub.evaluation.bench_report import BenchReport
    from leaf_hub.export.onnx_encoder import OnnxEncoder

    output, cache = bench_run
    data = json.loads(output.read_text())
    report = BenchReport.from_json(data)
    assert set(report.deployment) == set(KINDS)
    fp32, int8 = report.summary["onnx"].peak_throughput, report.summary["onnx-int8"].peak_throughput
    folders = {role: next(f for f in cache.iterdir() if role in f.name) for role in MODELS}
    texts = {"queries": read_texts(text_files[0]), "documents": read_texts(text_files[1])}
    for kind, d in report.deployment.items():
        assert d.leaf_int8_vs_teacher_fp32 == pytest.approx(int8["leaf"][kind] / fp32["teacher"][kind])
        assert d.leaf_int8_vs_teacher_int8 == pytest.approx(int8["leaf"][kind] / int8["teacher"][kind])
        assert d.leaf_fp32_vs_teacher_fp32 == pytest.approx(fp32["leaf"][kind] / fp32["teacher"][kind])
        # The cosines, recomputed from the exported graphs on the same texts at the same length.
        sample = _pool(texts[kind], len(texts[kind]))
        assert d.texts == len(sample) == 3
        for role in MODELS:
            emb = []
            for quantized in (False, True):
                encoder = OnnxEncoder(folders[role], quantized=quantized)
                encoder.max_seq_length = 32
                encode = encoder.encode_query if kind == "queries" else encoder.encode_document
                emb.append(encode(sample))
            cos = (emb[0] * emb[1]).sum(1) / np.linalg.norm(emb[0], axis=1) / np.linalg.norm(emb[1], axis=1)
            assert getattr(d, f"{role}_int8_cosine") == pytest.approx(cos.mean(), abs=1e-5)
            assert getattr(d, f"{role}_int8_cosine_min") == pytest.approx(cos.min(), abs=1e-5)
            assert 0.9 < cos.min() < 1.0  # int8 weights move the embeddings, a little
    md = output.with_suffix(".md").read_text()
    assert "## Deployment: the leaf in place of the teacher" in md
    q = report.deployment["queries"]
    assert f"| queries | {q.leaf_int8_vs_teacher_fp32:.1f}x | {q.leaf_int8_vs_teacher_int8:.1f}x |" in md
    assert f"{q.leaf_int8_cosine:.4f} ({q.leaf_int8_cosine_min:.4f})" in md
    # A run without both ONNX Runtime backends has no deployment block (torch alone cannot say it).
    assert "deployment" not in json.loads(json.dumps(BenchReport(meta=report.meta).to_json()))


def test_quick_protocol_by_default_thorough_a_flag_away(tiny_leaf_dir, tiny_teacher_dir):
    """The default `leaf-hub bench` times a small grid (minutes on 2 cores), --thorough the paper's 2,880 calls;
    options given explicitly win over either."""
    from leaf_hub.cli import build_parser
    from leaf_hub.cli.options import config_from_args

    def config(*flags: str) -> BenchConfig:
        args = build_parser().parse_args(["bench", "--leaf", "l", "--teacher", "t", *flags])
        return config_from_args(BenchConfig, args)

    def timed_calls(c: BenchConfig) -> int:
        return (
            sum(len(call_order(math.ceil(c.pool / b), c.repeats)) for b in c.batch_sizes)
            * len(c.backends)
            * len(c.kinds)
        )

    quick, thorough = config(), config("--thorough")
    assert (quick.backends, quick.batch_sizes, quick.repeats) == (["onnx", "onnx-int8"], [1, 16], 3)
    assert (thorough.backends, thorough.batch_sizes, thorough.repeats) == (
        ["torch", "onnx", "onnx-int8"], [1, 2, 4, 8, 16, 24], 5,
    )  # fmt: skip
    assert timed_calls(thorough) == 2880 and timed_calls(quick) == 408
    own = config(
        "--thorough", "--batch-sizes", "1,8", "--batch-sizes", "32", "--repeats", "2", "--backends", "onnx"
    )
    assert (own.backends, own.batch_sizes, own.repeats, own.pool) == (["onnx"], [1, 8, 32], 2, 32)
    # The library takes the same options as keywords, lists or comma-separated strings alike.
    assert BenchConfig("l", "t", backends="torch,onnx", kinds=["queries"]).backends == ["torch", "onnx"]


def test_bench_report_reads_back_and_reads_older_reports(bench_run):
    from leaf_hub.evaluation.bench_report import BenchReport
    from leaf_hub.hub.card import bench_setup

    output, _ = bench_run
    data = json.loads(output.read_text())
    report = BenchReport.read(output)
    assert report.to_json() == data  # nothing lost or reordered
    assert report.meta.mode == "quick" and report.meta.hardware.threads == 1
    # Hardware is written one way: cpu / cores / threads, which the card words.
    assert {"cpu", "cores", "threads"} <= set(data["meta"]) and "hardware" not in data["meta"]
    assert bench_setup(data["meta"]).startswith(report.meta.hardware.describe())
    # A report from before the typed classes (no mode, no deployment) still loads.
    old = json.loads(output.read_text())
    del old["meta"]["mode"], old["deployment"]
    old["meta"]["some_future_key"] = 1
    again = BenchReport.from_json(old)
    assert again.meta.mode is None and again.deployment == {} and again.summary == report.summary
    assert again.to_json()["meta"]["some_future_key"] == 1
    assert "## onnx-int8, documents" in to_markdown(old)
