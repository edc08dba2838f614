"""Clients leaf-hub was not written with load what it ships: an older sentence-transformers (in its own
virtual environment, PyTorch and its ONNX backend) and transformers.js (node), each against the PyTorch leaf.

``.ci/clients`` installs them under ``.clients/``; a test whose client is missing is skipped, naming the
command that installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from leaf_hub.leaf import CLASSIC_MODULES

REPO = Path(__file__).resolve().parents[1]
CLIENTS = REPO / ".clients"
ST5_PYTHON = CLIENTS / "st5" / "bin" / "python"
NODE_MODULES = CLIENTS / "node" / "node_modules"
INSTALL = "run `bash .ci/clients` to install it"

# Short and long texts (the long one runs past the leaf's 64-token limit, so truncation is compared too).
TEXTS = [
    "what is a leaf model?",
    "The cat sat on the mat.",
    "Distillation makes small models fast. " * 40,
    "information retrieval with a teacher and a student",
]


@pytest.fixture(scope="module")
def exported_leaf(tmp_path_factory, tiny_leaf_dir) -> Path:
    """The tiny leaf (query prompt, 64-token limit) exported to ONNX, as `leaf-hub export` leaves it."""
    from leaf_hub.export.onnx import export_model

    folder = tmp_path_factory.mktemp("clients") / "leaf"
    shutil.copytree(tiny_leaf_dir, folder)
    export_model(folder)
    return folder


def _reference(folder: Path) -> dict[str, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    leaf = SentenceTransformer(str(folder), device="cpu")
    return {"encode": leaf.encode(TEXTS), "query": leaf.encode_query(TEXTS)}


def test_a_saved_leaf_names_the_classic_module_paths(tiny_leaf_dir):
    """sentence-transformers 5 and older import module types by these names; 6 loads them too."""
    modules = json.loads((tiny_leaf_dir / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        f"{CLASSIC_MODULES}.{name}" for name in ("Transformer", "Pooling", "Dense", "Normalize")
    ]
    pooling = json.loads((tiny_leaf_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32 and pooling["pooling_mode_mean_tokens"] is True
    assert json.loads((tiny_leaf_dir / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 64,
        "do_lower_case": False,
    }


_ST5_SCRIPT = """
import json, sys
import numpy as np
import sentence_transformers
from sentence_transformers import SentenceTransformer

folder, texts, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
results = {"version": sentence_transformers.__version__}
for name, kwargs in {
    "torch": {},
    "onnx": {"backend": "onnx", "model_kwargs": {"file_name": "onnx/model.onnx"}},
    "onnx-int8": {"backend": "onnx", "model_kwargs": {"file_name": "onnx/model_quantized.onnx"}},
}.items():
    model = SentenceTransformer(folder, device="cpu", **kwargs)
    results[name] = {"encode": model.encode(texts).tolist(), "query": model.encode_query(texts).tolist()}
    results[name]["prompts"] = model.prompts
    results[name]["max_seq_length"] = model.max_seq_length
json.dump(results, open(out, "w"))
"""


@pytest.mark.skipif(
    not ST5_PYTHON.is_file(), reason=f"no older sentence-transformers in .clients/st5: {INSTALL}"
)
def test_sentence_transformers_5_loads_the_leaf_on_pytorch_and_onnx(exported_leaf, tmp_path):
    out = tmp_path / "st5.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(ST5_PYTHON), "-c", _ST5_SCRIPT, str(exported_leaf), json.dumps(TEXTS), str(out)],
        capture_output=True,
        text=True,
        env={**env, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["version"].startswith("5.")
    reference = _reference(exported_leaf)
    for backend, atol in (("torch", 1e-6), ("onnx", 1e-4)):
        got = results[backend]
        assert got["prompts"]["query"] == "query: " and got["max_seq_length"] == 64
        for kind in ("encode", "query"):
            np.testing.assert_allclose(np.asarray(got[kind]), reference[kind], atol=atol, err_msg=backend)
    int8 = np.asarray(results["onnx-int8"]["query"])
    cosines = (int8 * reference["query"]).sum(1)  # both unit length
    assert cosines.min() > 0.99


# -- transformers.js -----------------------------------------------------------------------------------
_NODE = shutil.which("node")
needs_transformers_js = pytest.mark.skipif(
    _NODE is None or not (NODE_MODULES / "@huggingface" / "transformers").is_dir(),
    reason=f"no node or no transformers.js in .clients/node: {INSTALL}",
)

# Models are read from disk only: env.localModelPath is the folder holding OWNER/NAME model folders.
_JS_PRELUDE = """import { env } from "@huggingface/transformers";
env.localModelPath = process.env.MODELS;
env.allowRemoteModels = false;
"""

_JS_EMBED = """import fs from "node:fs";
import { AutoModel, AutoTokenizer, pipeline } from "@huggingface/transformers";

const [id, dtype, textsJson, out] = process.argv.slice(2);
const texts = JSON.parse(textsJson);
const tokenizer = await AutoTokenizer.from_pretrained(id);
const model = await AutoModel.from_pretrained(id, { dtype });
const inputs = tokenizer(texts, { padding: true, truncation: true });
const { sentence_embedding } = await model(inputs);
const extractor = await pipeline("feature-extraction", id, { dtype });
const pooled = await extractor(texts, { pooling: "mean", normalize: true });
fs.writeFileSync(out, JSON.stringify({ embedding: sentence_embedding.tolist(), pipeline: pooled.tolist() }));
"""


def _run_node(script: str, folder: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    work = tmp_path / "js"
    work.mkdir(exist_ok=True)
    (work / "node_modules").symlink_to(NODE_MODULES)
    (work / "main.mjs").write_text(script)
    return subprocess.run(
        [_NODE, str(work / "main.mjs"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "MODELS": str(folder)},
        timeout=300,
        cwd=work,
    )


@pytest.fixture(scope="module")
def js_models(exported_leaf, tmp_path_factory) -> Path:
    """A folder laid out as transformers.js looks models up locally: MODELS/tester/tiny-leaf/."""
    models = tmp_path_factory.mktemp("js-models")
    (models / "tester").mkdir()
    (models / "tester" / "tiny-leaf").symlink_to(exported_leaf)
    return models


@needs_transformers_js
@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_transformers_js_embeds_like_the_pytorch_leaf(exported_leaf, js_models, tmp_path, dtype):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "js.json"
    proc = _run_node(
        _JS_PRELUDE + _JS_EMBED, js_models, tmp_path, "tester/tiny-leaf", dtype, json.dumps(TEXTS), str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    leaf = SentenceTransformer(str(exported_leaf), device="cpu")
    reference = leaf.encode(TEXTS)
    embedding = np.asarray(got["embedding"])
    assert embedding.shape == reference.shape
    if dtype == "fp32":  # the long text too: the graph restored the [SEP] transformers.js cut off
        np.testing.assert_allclose(embedding, reference, atol=1e-4)
    else:
        assert (embedding * reference).sum(1).min() > 0.99
    # The feature-extraction pipeline pools last_hidden_state itself: the backbone's mean, not the leaf's
    # embedding (it skips the projection into the teacher's space), which is why the card shows AutoModel.
    assert np.asarray(got["pipeline"]).shape[1] == leaf[0].get_embedding_dimension() != reference.shape[1]


@needs_transformers_js
def test_the_cards_transformers_js_snippet_runs_when_copied_alone(exported_leaf, js_models, tmp_path):
    from sentence_transformers import SentenceTransformer

    from leaf_hub.hub.card import render_card

    card = render_card(exported_leaf, repo_id="tester/tiny-leaf")
    snippet = card.split("```js\n", 1)[1].split("```", 1)[0]
    proc = _run_node(_JS_PRELUDE + snippet, js_models, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    leaf = SentenceTransformer(str(exported_leaf), device="cpu")
    expected = leaf.encode_query(["what is knowledge distillation?"])
    # q8 in the card (the smaller download): close to the PyTorch leaf, query prompt included.
    assert (np.asarray(printed) * expected).sum(1).min() > 0.99
