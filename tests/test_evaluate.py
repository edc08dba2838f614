"""``leaf-hub evaluate`` end to end with the tiny models: report contents checked against direct computation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from eval_helpers import synthetic_beir, write_sts_plain
from sentence_transformers import SentenceTransformer

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError
from leaf_hub.evaluation.alignment import embedding_distance
from leaf_hub.evaluation.evaluate import checkpoint_val_l2, default_dims, mrl_quant_variants, parse_dims
from leaf_hub.evaluation.retrieval import evaluate_embeddings, load_beir_folder
from leaf_hub.evaluation.sts import evaluate_sts, read_pairs_file

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAF_HUB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


@pytest.fixture
def leaf_copy(tiny_leaf_dir, tmp_path):
    """A private copy of the tiny leaf (evaluate writes eval_report.json into it)."""
    return shutil.copytree(tiny_leaf_dir, tmp_path / "leaf")


@pytest.fixture
def data(tmp_path):
    return {
        "beir": synthetic_beir(tmp_path / "syn"),
        "sts": write_sts_plain(tmp_path / "pairs.tsv", n=40),
    }


def _run(*args) -> int:
    return main(["evaluate", *map(str, args)])


def test_end_to_end_report(tmp_path, cache, leaf_copy, tiny_teacher_dir, data, capsys):
    out = tmp_path / "out" / "report.json"
    rc = _run(
        "--leaf", leaf_copy, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--sts", data["sts"],
        "--dims", "16,32", "--output", out, "--batch-size", "8",
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| syn | ndcg@10 |" in printed and f"wrote {out}" in printed
    report = json.loads(out.read_text())
    assert set(report) == {"meta", "results", "mrl_quant"}
    results = report["results"]
    assert set(results) == {"teacher", "leaf", "asymmetric"}

    # Recompute everything directly with the models' own encode_query / encode_document / encode.
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(leaf_copy), device="cpu")
    ds = load_beir_folder(data["beir"])
    tq, td = teacher.encode_query(ds.queries), teacher.encode_document(ds.docs)
    lq, ld = leaf.encode_query(ds.queries), leaf.encode_document(ds.docs)
    for mode, (q, d) in {"teacher": (tq, td), "leaf": (lq, ld), "asymmetric": (lq, td)}.items():
        expected = evaluate_embeddings(ds, q, d)
        for metric in ("ndcg@10", "recall@100"):
            assert results[mode]["syn"][metric] == pytest.approx(expected[metric], abs=1e-6)
        variants = report["mrl_quant"][mode]["syn"]
        assert list(variants) == ["dim=16", "dim=32", "dim=48", "int8", "binary"]
        assert variants["dim=48"] == pytest.approx(expected["ndcg@10"], abs=1e-6)
        assert variants == pytest.approx(mrl_quant_variants(ds, q, d, [16, 32, 48]), abs=1e-6)
    sts = read_pairs_file(data["sts"])
    sentences, _, _ = sts.unique_sentences()
    t_s, l_s = teacher.encode(sentences), leaf.encode(sentences)
    assert results["teacher"]["pairs"]["spearman"] == pytest.approx(
        evaluate_sts(sts, t_s, t_s)["spearman"], abs=1e-6
    )
    assert results["asymmetric"]["pairs"]["spearman"] == pytest.approx(
        evaluate_sts(sts, l_s, t_s)["spearman"], abs=1e-6
    )
    # Alignment without held-out texts: the collection's queries and documents.
    dist = embedding_distance(np.concatenate([tq, td]), np.concatenate([lq, ld]))
    assert results["leaf"]["alignment"]["l2"] == pytest.approx(dist["l2"], abs=1e-5)
    assert results["leaf"]["alignment"]["cosine"] == pytest.approx(dist["cosine"], abs=1e-5)
    assert 0 <= results["asymmetric"]["alignment"]["top10_overlap"] <= 1
    assert "alignment" not in results["teacher"]

    meta = report["meta"]
    assert meta["dimension"] == 48 and meta["mrl_dims"] == [16, 32, 48]
    assert meta["datasets"]["syn"]["stats"]["skipped_queries"] == 1
    # Two models x (queries, documents, STS sentences) encoded once each; nothing else.
    assert meta["timing"]["cache_misses"] == 6
    assert meta["timing"]["bare_encode_s"] > 0

    md = out.with_suffix(".md").read_text()
    assert "| task | metric | teacher | leaf | asymmetric | leaf / teacher |" in md
    assert "## Matryoshka dimensions and quantization" in md
    png = out.with_name("report-mrl_quant.png")
    assert png.read_bytes().startswith(PNG)
    assert json.loads((leaf_copy / "eval_report.json").read_text()) == report

    # A second run reads every embedding from the cache and reports the same numbers.
    assert _run("--leaf", leaf_copy, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--sts",
                data["sts"], "--dims", "16,32", "--output", out, "--no-plots") == 0  # fmt: skip
    again = json.loads(out.read_text())
    assert again["results"] == results
    assert again["meta"]["timing"]["cache_misses"] == 0
    assert again["meta"]["timing"]["cache_hits"] == 6
    assert again["meta"]["timing"]["encode_s"] == 0
    assert len(list(cache.rglob("*.npy"))) == 6


def test_onnx_backends_score_the_exported_graphs(tmp_path, cache, leaf_copy, tiny_teacher_dir, data, capsys):
    """--leaf-backend / --teacher-backend evaluate what is served: the ONNX exports, fp32 or int8 weights."""
    from leaf_hub.export.onnx_encoder import OnnxEncoder

    common = ["--leaf", leaf_copy, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--no-plots",
              "--no-mrl-quant", "--batch-size", "8"]  # fmt: skip
    assert _run(*common, "--output", tmp_path / "torch.json") == 0
    torch_report = json.loads((tmp_path / "torch.json").read_text())
    assert torch_report["meta"]["backends"] == {"teacher": "torch", "leaf": "torch"}
    saved = (leaf_copy / "eval_report.json").read_text()

    ds = load_beir_folder(data["beir"])
    reports = {}
    for backend in ("onnx", "onnx-int8"):
        out = tmp_path / f"{backend}.json"
        assert _run(*common, "--leaf-backend", backend, "--teacher-backend", backend, "--output", out) == 0
        report = reports[backend] = json.loads(out.read_text())
        assert report["meta"]["backends"] == {"teacher": backend, "leaf": backend}
        assert f"- backends: teacher ONNX Runtime, {'int8 weights' if 'int8' in backend else 'fp32'}" in (
            out.with_suffix(".md").read_text()
        )
        # The numbers are the exported graphs' own (exported into the cache, not into the model folders).
        folders = sorted((cache.parent / "onnx").iterdir())
        assert len(folders) == 2 and not (leaf_copy / "onnx").exists()
        quantized = backend == "onnx-int8"
        leaf_folder, teacher_folder = (
            next(f for f in folders if name in f.name) for name in ("leaf", "teacher")
        )
        leaf_enc = OnnxEncoder(leaf_folder, quantized=quantized)
        teacher_enc = OnnxEncoder(teacher_folder, quantized=quantized)
        # Batches as the report formed them (--batch-size 8): int8 activations are quantized per batch.
        lq, td = (
            leaf_enc.encode_query(ds.queries, batch_size=8),
            teacher_enc.encode_document(ds.docs, batch_size=8),
        )
        expected = evaluate_embeddings(ds, lq, td)
        assert report["results"]["asymmetric"]["syn"]["ndcg@10"] == pytest.approx(
            expected["ndcg@10"], abs=1e-6
        )
    # fp32 graphs reproduce PyTorch; int8 weights move the embeddings (and the alignment) a little.
    fp32, int8 = reports["onnx"]["results"], reports["onnx-int8"]["results"]
    torch_results = torch_report["results"]
    assert fp32["leaf"]["alignment"]["l2"] == pytest.approx(
        torch_results["leaf"]["alignment"]["l2"], abs=1e-4
    )
    assert fp32["leaf"]["syn"]["ndcg@10"] == pytest.approx(torch_results["leaf"]["syn"]["ndcg@10"], abs=1e-3)
    assert int8["leaf"]["alignment"]["l2"] != pytest.approx(fp32["leaf"]["alignment"]["l2"], abs=1e-4)
    # Three backends, three sets of cache entries (teacher and leaf, queries and documents each).
    assert len(list(cache.rglob("*.npy"))) == 3 * 4
    # The leaf's own eval_report.json stays the PyTorch one; each graph's report lies beside it for the card.
    assert (leaf_copy / "eval_report.json").read_text() == saved
    for backend, report in reports.items():
        assert json.loads((leaf_copy / f"eval_report.{backend}.json").read_text()) == report

    capsys.readouterr()
    run, _ = _make_run(tmp_path, leaf_copy)
    assert _run("--run", run, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--leaf-backend",
                "onnx", "--output", tmp_path / "r.json") == 2  # fmt: skip
    assert "--run evaluates the run's PyTorch checkpoints" in capsys.readouterr().err


def test_onnx_providers_follow_the_device(monkeypatch, caplog):
    import onnxruntime

    from leaf_hub.evaluation.evaluate import onnx_providers

    assert onnx_providers(None) == onnx_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level("WARNING"):
        assert onnx_providers("cuda:0") == ["CPUExecutionProvider"]
    assert "install onnxruntime-gpu" in caplog.text
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert onnx_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_dimension_mismatch_is_explained(tmp_path, cache, leaf_copy, tiny_student_dir, data, capsys):
    rc = _run("--leaf", leaf_copy, "--teacher", tiny_student_dir, "--retrieval", data["beir"], "--output",
              tmp_path / "r.json")  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "48-d" in err and "32-d" in err and "not distilled from this teacher" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to evaluate"),
        (["--dims", "16,x"], "--dims"),
        (["--dims", "4096"], "exceed the embedding dimension"),
        (["--batch-size", "0"], "--batch-size"),
        (["--alignment-texts", "/no/such/file"], "do not exist"),
    ],
)
def test_bad_options(tmp_path, cache, leaf_copy, tiny_teacher_dir, data, capsys, args, message):
    base = ["--leaf", leaf_copy, "--teacher", tiny_teacher_dir, "--output", tmp_path / "r.json"]
    if args and args[0] == "--dims":
        base += ["--retrieval", data["beir"]]
    assert _run(*base, *args) == 2
    assert message in capsys.readouterr().err


def test_teacher_from_leaf_run_json_and_missing_teacher(
    tmp_path, cache, leaf_copy, tiny_teacher_dir, data, capsys
):
    assert _run("--leaf", leaf_copy, "--sts", data["sts"], "--output", tmp_path / "r.json") == 2
    assert "pass --teacher" in capsys.readouterr().err
    (leaf_copy / "leaf_run.json").write_text(json.dumps({"teacher": str(tiny_teacher_dir)}))
    assert _run("--leaf", leaf_copy, "--sts", data["sts"], "--output", tmp_path / "r.json", "--no-plots") == 0
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["teacher"] == str(tiny_teacher_dir)


def _make_run(tmp_path, tiny_leaf_dir) -> tuple:
    """A distill-shaped run folder: two epoch checkpoints, the best leaf, metrics and validation split."""
    run = tmp_path / "run"
    shutil.copytree(tiny_leaf_dir, run / "checkpoints" / "epoch-001")
    second = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        weight = second[2].linear.weight
        weight.copy_(torch.randn(weight.shape, generator=generator))  # another random projection
    second.save(str(run / "checkpoints" / "epoch-002"))
    shutil.copytree(run / "checkpoints" / "epoch-002", run / "leaf")
    records = [
        {"step": 0, "epoch": 0, "event": "start", "val_l2": 1.40, "val_cosine": 0.0},
        {"step": 5, "epoch": 1, "event": "epoch", "val_l2": 1.20, "val_cosine": 0.2},
        {"step": 8, "epoch": 2, "event": "eval", "val_l2": 1.15, "val_cosine": 0.3},
        {"step": 10, "epoch": 2, "event": "epoch", "val_l2": 1.10, "val_cosine": 0.4},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"cut')
    rows = [{"text": "what is a cat", "type": "query"}, {"text": "the dog in the house", "type": "document"}]
    (run / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run, records


def test_run_checkpoints_plot(tmp_path, cache, tiny_leaf_dir, tiny_teacher_dir, data):
    run, _ = _make_run(tmp_path, tiny_leaf_dir)
    out = tmp_path / "out" / "report.json"
    rc = _run("--run", run, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--output", out,
              "--no-mrl-quant")  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["meta"]["leaf"] == str(run / "leaf")
    assert report["meta"]["datasets"]["alignment"]["source"] == str(run / "validation.jsonl")
    assert report["meta"]["datasets"]["alignment"]["stats"]["texts"] == 2
    assert "mrl_quant" not in report or not report["mrl_quant"]
    ckpts = report["checkpoints"]
    assert [c["name"] for c in ckpts] == ["epoch-001", "epoch-002", "final"]
    assert [c["val_l2"] for c in ckpts] == [1.20, 1.10, 1.10]
    # The final leaf is epoch-002's weights: same scores, and the main leaf row agrees.
    assert ckpts[2]["leaf"] == ckpts[1]["leaf"]
    assert ckpts[2]["leaf"]["ndcg@10"] == pytest.approx(report["results"]["leaf"]["syn"]["ndcg@10"])
    assert ckpts[0]["leaf"] != ckpts[1]["leaf"]
    assert out.with_name("report-checkpoints.png").read_bytes().startswith(PNG)
    assert "## Checkpoints (syn, nDCG@10)" in out.with_suffix(".md").read_text()
    assert (run / "leaf" / "eval_report.json").is_file()


def test_run_without_retrieval_or_checkpoints(tmp_path, cache, tiny_teacher_dir, data, capsys):
    run = tmp_path / "emptyrun"
    run.mkdir()
    assert (
        _run(
            "--run", run, "--teacher", tiny_teacher_dir, "--sts", data["sts"], "--output", tmp_path / "r.json"
        )
        == 2
    )
    assert "give a --retrieval collection" in capsys.readouterr().err


def test_checkpoint_val_l2_sources(tmp_path):
    ck = tmp_path / "checkpoints" / "epoch-003"
    ck.mkdir(parents=True)
    records = [{"epoch": 3, "event": "eval", "val_l2": 0.5}, {"epoch": 3, "event": "epoch", "val_l2": 0.4}]
    assert checkpoint_val_l2(tmp_path, ck, records) == 0.4
    assert checkpoint_val_l2(tmp_path, ck, records[:1]) == 0.5
    assert checkpoint_val_l2(tmp_path, tmp_path / "leaf", records) == 0.4  # final leaf: the best
    (ck / "leaf_run.json").write_text(json.dumps({"validation": {"l2": 0.3}}))
    assert checkpoint_val_l2(tmp_path, ck, records) == 0.3
    assert checkpoint_val_l2(tmp_path, tmp_path / "checkpoints" / "epoch-009", records) is None


def test_dims():
    assert default_dims(768) == [64, 128, 256, 512, 768]
    assert default_dims(1024) == [64, 128, 256, 512, 1024]
    assert default_dims(48) == [48]
    assert parse_dims("128, 64", 768) == [64, 128, 768]


def test_overlap_only_collection_and_alignment_texts(tmp_path, cache, leaf_copy, tiny_teacher_dir, data):
    folder = synthetic_beir(tmp_path / "nolabels", seed=5)
    shutil.rmtree(folder / "qrels")
    texts = tmp_path / "held.txt"
    texts.write_text("the cat in the house\nred car\nmusic and science\n")
    out = tmp_path / "r.json"
    rc = _run("--leaf", leaf_copy, "--teacher", tiny_teacher_dir, "--overlap", folder, "--alignment-texts", texts,
              "--output", out, "--no-plots")  # fmt: skip
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    assert set(results["leaf"]["nolabels"]) == {"top10_overlap"}
    assert (
        results["asymmetric"]["alignment"]["top10_overlap"]
        == results["asymmetric"]["nolabels"]["top10_overlap"]
    )
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(leaf_copy), device="cpu")
    lines = texts.read_text().splitlines()
    expected = embedding_distance(teacher.encode(lines), leaf.encode(lines))
    assert results["leaf"]["alignment"]["l2"] == pytest.approx(expected["l2"], abs=1e-5)


def test_python_api_returns_the_typed_report(tmp_path, cache, leaf_copy, tiny_teacher_dir, data):
    """`from leaf_hub import evaluate`: keyword options in, an EvaluationReport out, the same JSON as the CLI."""
    from leaf_hub import EvaluateConfig, EvaluationReport, evaluate

    out = tmp_path / "api" / "report.json"
    report = evaluate(
        leaf=str(leaf_copy), teacher=str(tiny_teacher_dir), retrieval=[str(data["beir"])], sts=str(data["sts"]),
        dims="16,32", output=out, plots=False, save_to_leaf=False, batch_size=8,
    )  # fmt: skip
    assert isinstance(report, EvaluationReport) and report.files == [out, out.with_suffix(".md")]
    assert json.loads(out.read_text()) == report.to_json()
    assert not (leaf_copy / "eval_report.json").exists()
    assert [r.name for r in report.retrieval] == ["syn"] and [s.name for s in report.sts] == ["pairs"]
    syn = report.retrieval[0]
    assert report.score("asymmetric", "syn", "ndcg@10") == syn.scores["asymmetric"].ndcg_at_10
    assert syn.scores["teacher"].top10_overlap is None and 0 <= syn.scores["leaf"].top10_overlap <= 1
    assert sorted(syn.mrl_quant["leaf"].dims) == [16, 32, 48] and syn.mrl_quant["leaf"].int8 is not None
    assert report.alignment.scores["leaf"].l2 > 0 and report.meta.mrl_dims == [16, 32, 48]
    # The CLI's run of the same config writes the same results.
    cli_out = tmp_path / "cli.json"
    assert _run("--leaf", leaf_copy, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--sts",
                data["sts"], "--dims", "16,32", "--output", cli_out, "--no-plots", "--no-save-to-leaf") == 0  # fmt: skip
    cli = json.loads(cli_out.read_text())
    assert cli["results"] == report.results() and cli["mrl_quant"] == report.mrl_quant()
    # A config object works as well; bad options are refused by field name before any model loads.
    with pytest.raises(LeafHubError, match="batch_size 0 must be at least 1"):
        evaluate(EvaluateConfig(leaf=str(leaf_copy), sts=[str(data["sts"])], batch_size=0))
    with pytest.raises(LeafHubError, match="dims '16,x' is not a comma-separated list"):
        EvaluateConfig(leaf="l", dims="16,x")


def test_report_json_round_trip_and_older_reports(tmp_path, cache, leaf_copy, tiny_teacher_dir, data):
    from leaf_hub.evaluation.report import EvaluationReport

    out = tmp_path / "r.json"
    run, _ = _make_run(tmp_path, leaf_copy)
    assert _run("--run", run, "--teacher", tiny_teacher_dir, "--retrieval", data["beir"], "--sts", data["sts"],
                "--output", out, "--no-plots", "--dims", "16") == 0  # fmt: skip
    data_json = json.loads(out.read_text())
    report = EvaluationReport.read(out)
    assert report.to_json() == data_json  # nothing lost or reordered
    assert [c.name for c in report.checkpoints] == ["epoch-001", "epoch-002", "final"]
    assert report.alignment.source == str(run / "validation.jsonl") and report.alignment.texts == 2
    # Hardware is written one way, as bench writes it: cpu and cores (no "hardware" string any more).
    meta = data_json["meta"]
    assert meta["cores"] >= 1 and meta["cpu"] and "hardware" not in meta
    assert report.meta.hardware.describe().startswith(meta["cpu"])

    # An older report: a hardware string, no meta.datasets (kinds guessed from the metrics), unknown keys.
    old = json.loads(out.read_text())
    for key in ("cpu", "cores", "datasets"):
        del old["meta"][key]
    old["meta"]["hardware"] = "x86_64 CPU, 2 cores"
    old["results"]["leaf"]["syn"]["mrr@10"] = 0.5
    loaded = EvaluationReport.from_json(old)
    assert loaded.meta.hardware.describe() == "x86_64 CPU, 2 cores"
    assert [(t.name, t.kind) for t in loaded.tasks()] == [("syn", "retrieval"), ("pairs", "sts"),
                                                            ("alignment", "alignment")]  # fmt: skip
    assert loaded.results() == old["results"] and loaded.mrl_quant() == old["mrl_quant"]
    assert loaded.score("leaf", "syn", "mrr@10") == 0.5 and loaded.score("leaf", "nosuch", "ndcg@10") is None
    # The card's and the Space's minimal reports load too.
    tiny = {"results": {"leaf": {"cisi": {"ndcg@10": 0.4}}}, "mrl_quant": {"leaf": {"cisi": {"int8": 0.39}}}}
    assert EvaluationReport.from_json(tiny).to_json()["results"] == tiny["results"]
    assert EvaluationReport.from_json(tiny).retrieval[0].mrl_quant["leaf"].int8 == 0.39
    assert EvaluationReport.from_json("not a report").tasks() == []


def test_int8_is_scored_the_way_the_space_scores_it(data):
    """One quantization path (issue 16): the report's int8 nDCG@10 ranks by the similarity of the vectors the
    Space's transform gives, with buckets calibrated on the index's documents; not by the raw int8 codes."""
    from sentence_transformers import quantize_embeddings

    from leaf_hub.space import compare as C

    ds = load_beir_folder(data["beir"])
    rng = np.random.default_rng(0)
    q = rng.normal(size=(len(ds.queries), 24)).astype(np.float32)
    d = rng.normal(size=(len(ds.docs), 24)).astype(np.float32)
    d[:, :3] *= 8  # dimensions of very different ranges: raw codes would weigh them alike
    ranges = C.int8_ranges(d)
    space_q, space_d = C.transform(q, 24, "int8", ranges), C.transform(d, 24, "int8", ranges)
    variants = mrl_quant_variants(ds, q, d, [24])
    assert variants["int8"] == pytest.approx(evaluate_embeddings(ds, space_q, space_d)["ndcg@10"], abs=1e-9)
    codes = [quantize_embeddings(x, "int8", ranges=ranges).astype(np.float32) for x in (q, d)]
    assert variants["int8"] != pytest.approx(evaluate_embeddings(ds, *codes)["ndcg@10"], abs=1e-6)
    binary_q, binary_d = C.transform(q, 24, "binary"), C.transform(d, 24, "binary")
    assert variants["binary"] == evaluate_embeddings(ds, binary_q, binary_d, normalize=False)["ndcg@10"]


@pytest.mark.parametrize("command", ["evaluate", "bench"])
def test_every_option_shows_its_default_and_a_help_line(command):
    """The flags come from EvaluateConfig / BenchConfig: each has a help line, and each option that takes a
    value says its default (or is required); switches say what they turn on or off."""
    import argparse

    from leaf_hub.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    options = [a for a in sub._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert len(options) >= 15
    for action in options:
        assert action.help and len(action.help) > 15, action.option_strings
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        assert switch or action.required or "default" in action.help, action.option_strings
