"""``leaf-hub export``: one whole-model ONNX graph (fp32 + int8), checked against PyTorch, written atomically."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from tiny_models import build_tokenizer
from transformers import MPNetConfig, MPNetModel

from leaf_hub.cli import main
from leaf_hub.errors import LeafHubError
from leaf_hub.export.onnx import (
    SAMPLE_DOCUMENTS,
    SAMPLE_QUERIES,
    activation_outlier_ratios,
    ensure_onnx,
    exclusion_steps,
    export_model,
    quantize,
)
from leaf_hub.export.onnx_encoder import OnnxEncoder

TEXTS = ["a short query", "The teacher embeds documents once, the leaf embeds queries.", "one two three"]


@pytest.fixture(scope="module")
def exported_leaf(tmp_path_factory, tiny_leaf_dir) -> Path:
    folder = tmp_path_factory.mktemp("export") / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    assert main(["export", "--model", str(folder)]) == 0
    return folder


def build_tiny_mpnet(folder: Path) -> SentenceTransformer:
    """A tiny random MPNet sentence-transformer: no token_type_ids, relative attention bias, padding offset."""
    backbone = folder / "backbone"
    backbone.mkdir(parents=True)
    tokenizer = build_tokenizer(backbone)
    torch.manual_seed(3)
    config = MPNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
    )
    MPNetModel(config).save_pretrained(backbone)
    modules = [Transformer(str(backbone), max_seq_length=64), Pooling(32, pooling_mode="mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return SentenceTransformer(str(folder), device="cpu")


def test_export_writes_one_whole_model_graph(exported_leaf, capsys):
    onnx_dir = exported_leaf / "onnx"
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["export.json", "model.onnx", "model_quantized.onnx"]
    graph = onnx.load(str(onnx_dir / "model.onnx")).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    outputs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output
    }
    assert inputs == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
        "token_type_ids": ["batch", "sequence"],
    }
    assert outputs == {"sentence_embedding": ["batch", 48], "last_hidden_state": ["batch", "sequence", 32]}
    # The projection and the normalization are inside the graph.
    ops = {n.op_type for n in graph.node}
    assert "ReduceL2" in ops or "LpNormalization" in ops or "Sqrt" in ops

    report = json.loads((onnx_dir / "export.json").read_text())
    assert report["fp32_max_abs_diff"] <= 1e-4
    assert report["int8_mean_cosine"] >= 0.99
    assert report["quantization"]["per_channel"] is True
    assert report["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert report["max_seq_length"] == 64


def test_graph_outputs_match_pytorch_for_any_batch_and_length(exported_leaf):
    model = SentenceTransformer(str(exported_leaf), device="cpu")
    session = ort.InferenceSession(
        str(exported_leaf / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    tokenizer = model[0].tokenizer
    for texts in (TEXTS[:1], TEXTS, SAMPLE_DOCUMENTS[:5]):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
        feed = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        sentence, tokens = session.run(["sentence_embedding", "last_hidden_state"], feed)
        assert np.abs(sentence - model.encode(texts)).max() <= 1e-4
        assert np.allclose(np.linalg.norm(sentence, axis=1), 1.0, atol=1e-5)
        with torch.no_grad():
            states = (
                model[0].auto_model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state
            )
        mask = feed["attention_mask"].astype(bool)
        assert np.abs(tokens[mask] - states.numpy()[mask]).max() <= 1e-4


def test_mpnet_exports_without_token_type_ids(tmp_path):
    model = build_tiny_mpnet(tmp_path / "mpnet")
    report = export_model(tmp_path / "mpnet")
    assert report.inputs == ["input_ids", "attention_mask"]
    encoder = OnnxEncoder(tmp_path / "mpnet")
    texts = SAMPLE_QUERIES[:4] + SAMPLE_DOCUMENTS[:3]
    assert np.abs(encoder.encode(texts, batch_size=3) - model.encode(texts)).max() <= 1e-4


def test_dynamo_exporter(tmp_path, tiny_teacher_dir):
    report = export_model(
        tiny_teacher_dir, output_dir=tmp_path / "out", exporter="dynamo", quantize_int8=False
    )
    assert report.exporter == "dynamo" and report.int8_file is None
    assert report.fp32_max_abs_diff <= 1e-4
    assert not (tmp_path / "out" / "onnx" / "model_quantized.onnx").exists()
    model = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    assert np.abs(OnnxEncoder(tmp_path / "out").encode_query(TEXTS) - model.encode_query(TEXTS)).max() <= 1e-4


def test_failed_check_leaves_no_complete_looking_files(tmp_path, tiny_leaf_dir):
    folder = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    with pytest.raises(LeafHubError, match="differs from PyTorch"):
        export_model(folder, max_abs_diff=-1.0)  # no graph can pass: the fp32 check fails
    assert not (folder / "onnx").exists()  # not even an empty onnx/
    with pytest.raises(LeafHubError, match="int8 model is too far"):
        export_model(folder, min_int8_cosine=1.5)  # fp32 passes, int8 cannot
    assert not (folder / "onnx").exists()


def test_reexport_without_int8_removes_the_stale_int8_file(tmp_path, tiny_leaf_dir):
    folder = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    export_model(folder)
    assert (folder / "onnx" / "model_quantized.onnx").is_file()
    export_model(folder, quantize_int8=False)
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["export.json", "model.onnx"]
    assert json.loads((folder / "onnx" / "export.json").read_text())["int8_file"] is None


def test_quantization_keeps_outlier_matmuls_in_fp32(exported_leaf, tmp_path):
    fp32 = exported_leaf / "onnx" / "model.onnx"
    encoder = OnnxEncoder(exported_leaf)
    ratios = activation_outlier_ratios(fp32, [encoder.tokenize(TEXTS)])
    graph = onnx.load(str(fp32)).graph
    weights = {i.name for i in graph.initializer}
    matmuls = {n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights}
    assert set(ratios) == matmuls and len(matmuls) >= 13  # 2 layers x 6 + the projection
    assert all(r >= 1.0 for r in ratios.values())

    keep = sorted(ratios, key=ratios.get)[-2:]
    quantize(fp32, tmp_path / "q.onnx", exclude=keep)
    nodes = onnx.load(str(tmp_path / "q.onnx")).graph.node
    still_fp32 = {n.name for n in nodes if n.op_type == "MatMul" and n.name in matmuls}
    assert still_fp32 == set(keep)
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)


def test_exclusion_steps_grow_from_the_worst_outliers():
    ratios = {f"m{i}": 10.0 for i in range(12)} | {"ffn_a": 300.0, "ffn_b": 50.0, "ffn_c": 25.0}
    steps = exclusion_steps(ratios)
    assert steps[0] == []
    assert steps[1] == ["ffn_a"]  # > 8x the median (10)
    assert steps[2] == ["ffn_a", "ffn_b"]  # > 4x
    assert steps[3] == ["ffn_a", "ffn_b", "ffn_c"]  # > 2x
    assert exclusion_steps({}) == [[]]


def test_ensure_onnx_exports_once_into_the_cache(tmp_path, tiny_teacher_dir):
    first = ensure_onnx(tiny_teacher_dir, cache_dir=tmp_path / "cache")
    assert first.parent == tmp_path / "cache" and (first / "onnx" / "model_quantized.onnx").is_file()
    stamp = (first / "onnx" / "model.onnx").stat().st_mtime_ns
    assert ensure_onnx(tiny_teacher_dir, cache_dir=tmp_path / "cache") == first
    assert (first / "onnx" / "model.onnx").stat().st_mtime_ns == stamp
    assert not (Path(tiny_teacher_dir) / "onnx").exists()  # the user's folder is left alone
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]  # no staging left behind


def test_export_cache_key_ignores_reports_but_not_model_files(tmp_path, tiny_leaf_dir):
    """Evaluate and card write reports into the leaf folder: that must not force a new export."""
    from leaf_hub.export.onnx import _source_key

    folder = shutil.copytree(tiny_leaf_dir, tmp_path / "leaf")
    key = _source_key(folder)[1]
    (folder / "eval_report.json").write_text("{}")
    (folder / "eval_report.onnx-int8.json").write_text("{}")
    (folder / "bench_report.json").write_text("{}")
    (folder / "README.md").write_text("# card")
    (folder / "eval_report-mrl_quant.png").write_bytes(b"png")
    assert _source_key(folder)[1] == key
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")  # a model file: a new key
    assert _source_key(folder)[1] != key


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_export_without_the_onnx_extra_names_it_before_any_work(
    tmp_path, tiny_leaf_dir, capsys, monkeypatch, missing
):
    folder = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    monkeypatch.setitem(sys.modules, missing, None)  # how Python marks a module that cannot be imported
    assert main(["export", "--model", str(folder), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"needs the onnx extra ({missing} not installed)" in err and 'pip install "leaf-hub[onnx]"' in err
    assert "Traceback" not in err
    assert not (folder / "onnx").exists() and not (tmp_path / "out").exists()
    with pytest.raises(LeafHubError, match=r"leaf-hub\[onnx\]"):
        export_model(folder)


def test_graph_restores_the_end_token_a_client_cut_off(exported_leaf):
    """transformers.js adds [CLS] ... [SEP] and then cuts at the limit: the [SEP] is lost, the graph puts it back."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(exported_leaf), device="cpu")
    long_text = "the cat sat on the mat and " * 30
    ids = model[0].tokenizer(long_text)["input_ids"]
    limit = model.max_seq_length
    assert len(ids) > limit and ids[-1] == model[0].tokenizer.sep_token_id
    encoder = OnnxEncoder(exported_leaf)
    cut = np.asarray([ids[:limit]], dtype=np.int64)  # no [SEP] at the end
    feed = {"input_ids": cut, "attention_mask": np.ones_like(cut), "token_type_ids": np.zeros_like(cut)}
    (got,) = encoder.session.run(["sentence_embedding"], feed)
    np.testing.assert_allclose(got, model.encode([long_text]), atol=1e-5)
    # A short text and a correctly tokenized long one are left as they are.
    np.testing.assert_allclose(
        encoder.encode([long_text, "a cat"]), model.encode([long_text, "a cat"]), atol=1e-5
    )
    report = json.loads((exported_leaf / "onnx" / "export.json").read_text())
    assert report["end_token_id"] == model[0].tokenizer.sep_token_id
    assert report["fp32_cut_end_max_abs_diff"] <= 1e-4


def test_ensure_onnx_uses_an_exported_folder_as_is(exported_leaf, tmp_path):
    assert ensure_onnx(exported_leaf, cache_dir=tmp_path / "cache") == exported_leaf
    assert not (tmp_path / "cache").exists()


def test_cli_errors(tmp_path, capsys, tiny_leaf_dir, tiny_teacher_dir):
    assert main(["export", "--model", "sentence-transformers/all-MiniLM-L6-v2"]) == 2
    assert "give --output DIR" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err

    # A Router pair is not one graph.
    from leaf_hub.export.pair import write_pair

    pair = write_pair(tiny_leaf_dir, tiny_teacher_dir, tmp_path / "pair", verify=False)
    assert main(["export", "--model", str(pair)]) == 2
    assert "cannot export a model made of ['Router']" in capsys.readouterr().err
    assert not (pair / "onnx" / "model.onnx").exists()


@pytest.mark.integration
def test_real_leaf_sized_model_exports_faithfully(tmp_path, offline_models, capsys):
    """The untrained MiniLM leaf (same architecture and size as a trained one) through the CLI."""
    from leaf_hub.leaf import build_leaf
    from leaf_hub.models import load_model

    student = load_model("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    leaf = build_leaf(student, 768, True, max_seq_length=384)
    leaf.save(str(tmp_path / "leaf"))
    assert main(["export", "--model", str(tmp_path / "leaf")]) == 0
    out = capsys.readouterr().out
    assert "model.onnx" in out and "model_quantized.onnx" in out
    report = json.loads((tmp_path / "leaf" / "onnx" / "export.json").read_text())
    assert report["fp32_max_abs_diff"] <= 1e-4 and report["int8_mean_cosine"] >= 0.99
    assert report["max_seq_length"] == 384

    texts = SAMPLE_QUERIES[:6] + SAMPLE_DOCUMENTS[:4]
    encoder = OnnxEncoder(tmp_path / "leaf")
    assert encoder.dimension == 768
    reference = leaf.encode_document(texts)
    assert np.abs(encoder.encode_document(texts, batch_size=4) - reference).max() <= 1e-4
    int8 = OnnxEncoder(tmp_path / "leaf", quantized=True).encode_document(texts)
    cos = (int8 * reference).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.mean() >= 0.99
