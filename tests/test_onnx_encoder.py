"""The torch-free ONNX encoder reproduces the PyTorch model: prompts, batching, truncation, order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from leaf_hub.errors import LeafHubError
from leaf_hub.export.onnx import export_model
from leaf_hub.export.onnx_encoder import OnnxEncoder

TEXTS = [
    "what is a leaf model",
    "The teacher embeds documents once; the leaf embeds queries at search time.",
    "a",
    "Fire and water, city and tree: " + "many words in a long sentence " * 30,
    "Data, networks and information science.",
]


@pytest.fixture(scope="module")
def leaf_dir(tmp_path_factory, tiny_leaf_dir) -> Path:
    folder = tmp_path_factory.mktemp("enc") / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    export_model(folder)
    return folder


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_teacher_dir) -> Path:
    """The tiny teacher exported to another folder (its Transformer is saved there with the ONNX files)."""
    folder = tmp_path_factory.mktemp("enc") / "teacher"
    export_model(tiny_teacher_dir, output_dir=folder)
    return folder


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def test_encode_matches_pytorch_with_prompts_and_batches(leaf_dir):
    model = SentenceTransformer(str(leaf_dir), device="cpu")
    encoder = OnnxEncoder(leaf_dir)
    assert encoder.prompts["query"] == "query: "
    assert encoder.dimension == model.get_embedding_dimension() == 48
    for batch_size in (1, 2, 32):
        assert _max_diff(encoder.encode(TEXTS, batch_size=batch_size), model.encode(TEXTS)) <= 1e-4
        assert (
            _max_diff(encoder.encode_query(TEXTS, batch_size=batch_size), model.encode_query(TEXTS)) <= 1e-4
        )
        assert (
            _max_diff(encoder.encode_document(TEXTS, batch_size=batch_size), model.encode_document(TEXTS))
            <= 1e-4
        )
    # The query prompt really is applied: queries differ from plain encodings.
    assert _max_diff(encoder.encode_query(TEXTS), encoder.encode(TEXTS)) > 1e-3
    # Explicit prompt and prompt_name.
    assert _max_diff(encoder.encode(TEXTS, prompt="query: "), encoder.encode_query(TEXTS)) == 0
    assert (
        _max_diff(encoder.encode(TEXTS, prompt_name="query"), model.encode(TEXTS, prompt_name="query"))
        <= 1e-4
    )


def test_results_come_back_in_input_order_and_single_text(leaf_dir):
    encoder = OnnxEncoder(leaf_dir)
    forward = encoder.encode(TEXTS, batch_size=2)
    backward = encoder.encode(TEXTS[::-1], batch_size=2)
    assert _max_diff(forward, backward[::-1]) <= 1e-6
    single = encoder.encode(TEXTS[1])
    assert single.shape == (48,)
    assert _max_diff(single, forward[1]) <= 1e-5
    assert encoder.encode([]).shape == (0, 48)


def test_truncation_and_max_seq_length_override(leaf_dir):
    model = SentenceTransformer(str(leaf_dir), device="cpu")
    encoder = OnnxEncoder(leaf_dir)
    assert encoder.max_seq_length == model.max_seq_length == 64
    long_text = TEXTS[3]
    assert len(encoder.tokenize([long_text])["input_ids"][0]) == 64
    encoder.max_seq_length = 8
    model.max_seq_length = 8
    assert len(encoder.tokenize([long_text])["input_ids"][0]) == 8
    assert _max_diff(encoder.encode(TEXTS), model.encode(TEXTS)) <= 1e-4
    assert OnnxEncoder(leaf_dir, max_seq_length=16).max_seq_length == 16


def test_token_embeddings_match(leaf_dir):
    model = SentenceTransformer(str(leaf_dir), device="cpu")
    encoder = OnnxEncoder(leaf_dir)
    ours = encoder.encode(TEXTS[:3], output_value="token_embeddings")
    theirs = model.encode(TEXTS[:3], output_value="token_embeddings")
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == tuple(b.shape)
        assert _max_diff(a, b.numpy()) <= 1e-4


def test_fingerprint_and_sentence_transformers_keywords(leaf_dir, teacher_dir):
    """What embedding caches key on, and the keywords code written for sentence-transformers passes."""
    fp32, int8 = OnnxEncoder(leaf_dir), OnnxEncoder(leaf_dir, quantized=True)
    assert fp32.fingerprint() == OnnxEncoder(leaf_dir).fingerprint() != int8.fingerprint()
    assert fp32.fingerprint() != OnnxEncoder(teacher_dir).fingerprint()
    before = fp32.fingerprint()
    fp32.max_seq_length = 8  # other truncation, other embeddings
    assert fp32.fingerprint() != before
    fp32.max_seq_length = fp32.model_max_seq_length
    assert fp32.fingerprint() == before
    model = SentenceTransformer(str(leaf_dir), device="cpu")
    assert fp32.normalized == (type(model[-1]).__name__ == "Normalize")
    emb = fp32.encode_query(TEXTS, batch_size=2, convert_to_numpy=True, show_progress_bar=False)
    assert _max_diff(emb, fp32.encode_query(TEXTS)) == 0


def test_quantized_model_is_close(leaf_dir):
    model = SentenceTransformer(str(leaf_dir), device="cpu")
    encoder = OnnxEncoder(leaf_dir, quantized=True, intra_op_threads=1)
    assert encoder.onnx_path.name == "model_quantized.onnx"
    a, b = encoder.encode_query(TEXTS), model.encode_query(TEXTS)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() >= 0.99


def test_spinning_can_be_turned_off_without_changing_the_embeddings(leaf_dir):
    spinning, quiet = (
        OnnxEncoder(leaf_dir, intra_op_threads=2),
        OnnxEncoder(leaf_dir, intra_op_threads=2, allow_spinning=False),
    )
    options = quiet.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert _max_diff(spinning.encode(TEXTS), quiet.encode(TEXTS)) <= 1e-6


def test_teacher_with_transformer_in_subfolder_and_cased_tokenizer(teacher_dir, tiny_teacher_dir):
    model = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    encoder = OnnxEncoder(teacher_dir)
    texts = ["Cased Words Here", "cased words here", *TEXTS]
    assert _max_diff(encoder.encode_query(texts), model.encode_query(texts)) <= 1e-4
    assert _max_diff(encoder.encode_document(texts), model.encode_document(texts)) <= 1e-4


def test_do_lower_case_from_sentence_bert_config(tmp_path, tiny_teacher_dir):
    """sentence_bert_config.json's do_lower_case adds lowercasing, as sentence-transformers does."""
    folder = tmp_path / "lower"
    shutil.copytree(tiny_teacher_dir, folder)
    config_path = folder / "sentence_bert_config.json"
    config = json.loads(config_path.read_text())
    config["do_lower_case"] = True
    config_path.write_text(json.dumps(config))
    export_model(folder, quantize_int8=False)
    encoder = OnnxEncoder(folder)
    model = SentenceTransformer(str(folder), device="cpu")
    texts = ["Cased Words Here", "cased words here"]
    ours = encoder.encode(texts)
    assert _max_diff(ours[0], ours[1]) <= 1e-6
    assert _max_diff(ours, model.encode(texts)) <= 1e-4


def test_errors(tmp_path, leaf_dir, tiny_leaf_dir):
    with pytest.raises(LeafHubError, match="leaf-hub export"):
        OnnxEncoder(tiny_leaf_dir)  # never exported
    with pytest.raises(LeafHubError, match="does not exist"):
        OnnxEncoder(tmp_path / "missing")
    with pytest.raises(LeafHubError, match="neither a local folder nor a Hub model"):
        OnnxEncoder("no-such-org/no-such-model")
    encoder = OnnxEncoder(leaf_dir)
    with pytest.raises(LeafHubError, match="prompt name 'nope'"):
        encoder.encode(["x"], prompt_name="nope")
    with pytest.raises(LeafHubError, match="batch_size"):
        encoder.encode(["x"], batch_size=0)


def test_bare_transformer_graph_is_refused(tmp_path, leaf_dir):
    """An ONNX file with only the transformer (what published LEAF models had) gets a clear error."""
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path / "bare"
    shutil.copytree(leaf_dir, folder)
    node = helper.make_node("Cast", ["input_ids"], ["last_hidden_state"], to=TensorProto.FLOAT)
    graph = helper.make_graph(
        [node],
        "bare",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s"])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "onnx" / "model.onnx"
    )
    with pytest.raises(LeafHubError, match="no 'sentence_embedding' output"):
        OnnxEncoder(folder)


def test_encoder_never_imports_torch(leaf_dir):
    code = (
        "import sys\n"
        "from leaf_hub.export.onnx_encoder import OnnxEncoder\n"
        f"enc = OnnxEncoder({str(leaf_dir)!r}, quantized=True)\n"
        "v = enc.encode_query(['what is a leaf', 'a longer query about the teacher'], batch_size=1)\n"
        "assert v.shape == (2, 48), v.shape\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print('heavy modules:', heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy modules: []" in result.stdout
