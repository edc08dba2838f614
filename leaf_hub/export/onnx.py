"""``leaf-hub export``: one ONNX graph with the whole embedding model, fp32 and int8, checked on real texts.

Published LEAF models shipped an ONNX file holding only the transformer, so users rebuilt mean pooling,
the projection and normalization by hand. Here the graph is the complete sentence-transformers pipeline:

    input_ids, attention_mask[, token_type_ids]  ->  Transformer -> Pooling -> [Dense] -> [Normalize]
    outputs: sentence_embedding (batch, dim), last_hidden_state (batch, sequence, hidden)

with dynamic batch and sequence axes. ``last_hidden_state`` is what transformers.js and optimum-style
loaders look for; ``sentence_embedding`` is the model's embedding, ready to use.

Clients that truncate after adding special tokens (transformers.js cuts ``[CLS] ... [SEP]`` at the limit,
losing the ``[SEP]``; Python tokenizers cut the text and keep it) would embed a long text differently.
The graph puts the tokenizer's end token back: a row that fills the model's whole sequence limit gets the
end token as its last token, which is what a correct tokenization has there (a no-op for one). So every
client gets the leaf's embedding of a long text; each export checks it on a text cut that way. Any sentence-transformers
model of that shape exports: a leaf, its teacher (MPNet has no token_type_ids, BERT has), a student.

Files (``DIR/onnx/``): ``model.onnx`` (fp32), ``model_quantized.onnx`` (int8 weights, dynamic
quantization: the name the ecosystem looks for) and ``export.json`` (what was checked). Each export checks
itself through the torch-free :class:`~leaf_hub.export.onnx_encoder.OnnxEncoder` (so tokenization is checked
too) on real queries and documents, one of them longer than the model's sequence limit:
max abs difference to PyTorch <= 1e-4 for fp32, mean cosine >= 0.99 for int8. Files are written under
temporary names and renamed only when both checks pass, so a failed export leaves nothing that looks
complete.

Quantization (dynamic, int8 weights): per-tensor weights measured cosine 0.975 on a leaf, so weights are
per-channel. On CPUs without AVX-512 VNNI (this one: AVX2) ONNX Runtime's u8 x s8 kernels saturate (an
untrained MiniLM leaf: 0.982; MPNet: 0.006), so weights use 7 bits (``reduce_range``), which is exact
on every CPU (MiniLM leaf: 0.993). Activations are quantized per tensor at run time, which fails where a
MatMul's input has a few huge outlier features: the feed-forward output projections of MPNet see inputs
200x their RMS, and all-int8 MPNet reaches only 0.916. So when the all-int8 model misses the 0.99 bar,
the MatMuls whose inputs have the largest max/RMS ratio (measured on the check texts) stay in fp32, more
of them step by step until it passes (MPNet: 6 of 72 -> 0.991); ``export.json`` lists them.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (TorchScript tracing) by default: on this stack it
exports MiniLM in ~1 s instead of ~9 s with the dynamo exporter, and the graph runs as fast or faster;
``--exporter dynamo`` is there for when the tracing exporter is gone from a future PyTorch. Either way the
backbone is traced with eager attention (see :func:`eager_attention`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from leaf_hub.errors import LeafHubError
from leaf_hub.export.onnx_encoder import FP32_FILE, INT8_FILE, ONNX_SUBFOLDER
from leaf_hub.files import atomic_write_json, finish_temp

logger = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4
MIN_INT8_COSINE = 0.99
REPORT_FILE = "export.json"
# Part of the cache key of ensure_onnx: bump it when the exported graph changes, so old caches are redone.
EXPORT_FORMAT = 3
OUTPUT_NAMES = ["sentence_embedding", "last_hidden_state"]
# Modules after the Transformer that the graph can hold (they are run as they are, inside the graph).
_GRAPH_MODULES = {"Pooling", "Dense", "Normalize", "LayerNorm", "Dropout"}
# Dynamic quantization settings (see the module docstring).
QUANTIZATION: dict[str, Any] = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True}
# MatMuls whose input's max/RMS exceeds FACTOR x the median are kept in fp32, tried in this order until
# the int8 model passes its check.
OUTLIER_FACTORS = (8.0, 4.0, 2.0)

# Real texts for the self-check (and the built-in fallback of `leaf-hub bench`): short search queries
# and paragraph-length documents of the kind embedding models serve.
SAMPLE_QUERIES = [
    "how do vaccines train the immune system",
    "best way to store fresh basil",
    "what is the capital of australia",
    "symptoms of vitamin d deficiency",
    "python read csv file into dictionary",
    "why is the sky blue during the day",
    "difference between a virus and bacteria",
    "how long does it take to walk 5 km",
    "who wrote the declaration of independence",
    "information retrieval evaluation metrics",
    "cheap flights from london to new york in march",
    "how does a heat pump work in winter",
]
SAMPLE_DOCUMENTS = [
    "A heat pump moves heat rather than generating it. In winter it extracts warmth from the outside air "
    "or ground, even at low temperatures, and transfers it indoors using a refrigerant cycle driven by "
    "a compressor. Because it moves more energy than it consumes, its efficiency can exceed 300 percent.",
    "Canberra is the capital city of Australia. It was selected as a compromise between Sydney and "
    "Melbourne, the two largest cities, and was purpose-built after a design competition won by the "
    "American architects Walter Burley Griffin and Marion Mahony Griffin.",
    "Vaccines expose the immune system to a harmless piece or an inactivated form of a pathogen. The body "
    "responds by producing antibodies and memory cells, so that a later encounter with the real pathogen "
    "triggers a faster and stronger defence.",
    "Fresh basil keeps best at room temperature: trim the stems, place them in a glass of water like a "
    "bouquet and cover the leaves loosely with a plastic bag. In the refrigerator the leaves blacken "
    "within a day or two.",
    "The study compares automatic indexing with manual indexing for a collection of scientific abstracts. "
    "Retrieval effectiveness was measured with recall and precision on a set of test queries, and the "
    "automatic method performed as well as trained indexers at a fraction of the cost.",
    "Sunlight is scattered by the molecules of the atmosphere. Shorter wavelengths are scattered much "
    "more strongly than longer ones, a process known as Rayleigh scattering, so blue light reaches our "
    "eyes from every direction of the sky.",
    "To read a CSV file into dictionaries in Python, open it with the csv module's DictReader. Each row "
    "becomes a dictionary whose keys are the column names from the header line.",
    "Bacteria are single-celled living organisms that can reproduce on their own, while viruses are much "
    "smaller particles that need to infect a host cell to replicate. Antibiotics work against bacteria "
    "but have no effect on viruses.",
]


@dataclass
class ExportReport:
    """What an export wrote and how well the files match the PyTorch model (saved as ``onnx/export.json``)."""

    model: str
    fp32_file: str
    int8_file: str | None
    exporter: str
    opset: int
    inputs: list[str]
    outputs: list[str]
    max_seq_length: int
    check_texts: int
    fp32_max_abs_diff: float
    fp32_token_max_abs_diff: float
    # The end token the graph restores on inputs cut at the limit without it (None: the tokenizer adds none).
    end_token_id: int | None = None
    fp32_cut_end_max_abs_diff: float | None = None
    int8_mean_cosine: float | None = None
    int8_min_cosine: float | None = None
    quantization: dict[str, Any] | None = None
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)


# -- the graph ----------------------------------------------------------------------------------------


def graph_inputs(model) -> list[str]:
    """The ONNX inputs for ``model``: input_ids, attention_mask and token_type_ids when the backbone takes them."""
    forward = inspect.signature(model[0].auto_model.forward).parameters
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in forward else [])


def check_exportable(model) -> None:
    """Raise :class:`LeafHubError` unless ``model`` is Transformer -> Pooling [-> Dense] [-> Normalize] ..."""
    from sentence_transformers.base.modules.transformer import Transformer

    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if not modules or not isinstance(modules[0], Transformer):
        raise LeafHubError(
            f"cannot export a model made of {names}: the first module must be a (text) Transformer; "
            "Router pairs and static-embedding models are not exportable as one graph"
        )
    transformer = modules[0]
    if getattr(
        transformer, "transformer_task", "feature-extraction"
    ) != "feature-extraction" or "text" not in (
        getattr(transformer, "modality_config", None) or {"text": None}
    ):
        raise LeafHubError("cannot export: the Transformer module is not a text feature-extraction backbone")
    others = [n for n in names[1:] if n not in _GRAPH_MODULES]
    if others:
        raise LeafHubError(
            f"cannot export modules {others}: the ONNX graph holds Transformer, {sorted(_GRAPH_MODULES)} only"
        )
    if "Pooling" not in names:
        raise LeafHubError(
            f"cannot export a model without a Pooling module ({names}): it has no sentence embedding"
        )
    excludes_prompt = any(
        type(m).__name__ == "Pooling" and not getattr(m, "include_prompt", True) for m in modules[1:]
    )
    if excludes_prompt and any((model.prompts or {}).values()):
        raise LeafHubError(
            "cannot export: the Pooling module excludes prompt tokens (include_prompt=False), which "
            "the graph cannot know about; export a model that pools over the whole input"
        )


def end_token_id(model) -> int | None:
    """The special token the model's tokenizer ends every text with (``[SEP]``, ``</s>``), or None."""
    tokenizer = model[0].tokenizer
    try:
        with_special = tokenizer("leaf")["input_ids"]
        plain = tokenizer("leaf", add_special_tokens=False)["input_ids"]
    except Exception:  # noqa: BLE001 - a tokenizer that cannot say: no restoration
        return None
    if len(with_special) <= len(plain) or with_special[-len(plain) :] == plain:
        return None
    last = with_special[-1]
    return int(last) if last in set(getattr(tokenizer, "all_special_ids", []) or []) else None


def _graph_module(model, input_names: list[str]):
    import torch

    end_token = end_token_id(model)
    left_padded = getattr(model[0].tokenizer, "padding_side", "right") == "left"

    class SentenceEmbeddingGraph(torch.nn.Module):
        """Transformer backbone followed by the model's own Pooling/Dense/Normalize modules."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = model[0].auto_model
            self.head = torch.nn.ModuleList(list(model)[1:])
            self.takes_token_types = "token_type_ids" in input_names
            self.limit = int(model.max_seq_length or 0)

        def restore_end_token(self, input_ids, attention_mask):
            """A row as long as the limit ends with the end token, as a correct tokenization has it."""
            lengths = attention_mask.sum(1, keepdim=True)
            last = torch.ones_like(lengths) * (input_ids.shape[1] - 1) if left_padded else lengths - 1
            at_limit = lengths >= self.limit
            current = input_ids.gather(1, last)
            fixed = torch.where(at_limit, torch.full_like(current, end_token), current)
            return input_ids.scatter(1, last, fixed)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            if end_token is not None and self.limit > 0:
                input_ids = self.restore_end_token(input_ids, attention_mask)
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if self.takes_token_types:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.backbone(**kwargs, return_dict=True).last_hidden_state
            features = {"token_embeddings": hidden, "attention_mask": attention_mask}
            for module in self.head:
                features = module(features)
            return features["sentence_embedding"], hidden

    return SentenceEmbeddingGraph().eval()


def _example_inputs(model, input_names: list[str]):
    # Two texts of different lengths: the trace must see padding so that the mask path is recorded.
    tokenizer = model[0].tokenizer
    batch = tokenizer(
        [SAMPLE_QUERIES[0], SAMPLE_DOCUMENTS[0]],
        padding=True,
        truncation=True,
        max_length=model.max_seq_length,
        return_tensors="pt",
    )
    import torch

    return tuple(batch[n] if n in batch else torch.zeros_like(batch["input_ids"]) for n in input_names)


@contextlib.contextmanager
def eager_attention(backbone):
    """Trace the backbone with the plain ("eager") attention implementation, then restore the original.

    transformers' default SDPA attention traces into a graph that also guards fully-masked rows
    (IsNaN + Where over every attention matrix): 17% of a MiniLM leaf's ONNX Runtime time on CPU, for
    nothing, since a real text never has an all-padding row. The eager graph computes the same values.
    """
    config = getattr(backbone, "config", None)
    original = getattr(config, "_attn_implementation", None)
    switch = original not in (None, "eager") and hasattr(backbone, "set_attn_implementation")
    if switch:
        try:
            backbone.set_attn_implementation("eager")
        except (ValueError, NotImplementedError):  # a model without an eager path: keep its own
            switch = False
    try:
        yield
    finally:
        if switch:
            backbone.set_attn_implementation(original)


def export_graph(model, path: Path, opset: int = 17, exporter: str = "torchscript") -> list[str]:
    """Write the whole-model ONNX graph of ``model`` to ``path``; returns its input names."""
    input_names = graph_inputs(model)
    with eager_attention(model[0].auto_model):
        _export(model, path, input_names, opset, exporter)
    _name_output_axes(path, model.get_embedding_dimension(), model[0].get_embedding_dimension())
    return input_names


def _export(model, path: Path, input_names: list[str], opset: int, exporter: str) -> None:
    import warnings

    import torch

    graph = _graph_module(model, input_names)
    args = _example_inputs(model, input_names)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings about Python booleans in transformers' mask code: those branches are constant
        # for an encoder with an attention mask; the self-check below verifies the graph on other shapes.
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
            axes["sentence_embedding"] = {0: "batch"}
            axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
            torch.onnx.export(
                graph,
                args,
                str(path),
                input_names=input_names,
                output_names=OUTPUT_NAMES,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        elif exporter == "dynamo":
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            shapes = {n: {0: batch, 1: sequence} for n in input_names}
            torch.onnx.export(
                graph,
                args,
                str(path),
                input_names=input_names,
                output_names=OUTPUT_NAMES,
                dynamic_shapes=shapes,
                opset_version=max(opset, 18),
                dynamo=True,
                external_data=False,
            )
        else:
            raise LeafHubError(f"unknown exporter {exporter!r}; use 'torchscript' or 'dynamo'")


def _name_output_axes(path: Path, dimension: int, hidden: int) -> None:
    """Give the outputs their static sizes and the same axis names as the inputs.

    Exporters leave generated names (``Divsentence_embedding_dim_1``) where loaders and model cards
    expect ``(batch, dim)`` and ``(batch, sequence, hidden)``.
    """
    import onnx

    model = onnx.load(str(path))
    wanted = {
        "sentence_embedding": ["batch", dimension],
        "last_hidden_state": ["batch", "sequence", hidden],
    }
    for value in list(model.graph.input) + list(model.graph.output):
        dims = wanted.get(value.name, ["batch", "sequence"])
        shape = value.type.tensor_type.shape
        for dim, size in zip(shape.dim, dims, strict=False):
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
    onnx.save(model, str(path))


def quantize(fp32_path: Path, int8_path: Path, exclude: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization of the weights of ``fp32_path`` (activations quantized at run time).

    ``exclude`` names MatMul nodes to keep in fp32 (see :func:`activation_outlier_ratios`).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs every tensor it skips at INFO on the root logger, and advises shape-inference
    # pre-processing (which fails on transformer graphs with dynamic axes and is not needed for dynamic
    # quantization): silence it for the duration of the call.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            weight_type=getattr(QuantType, QUANTIZATION["weight_type"]),
            per_channel=QUANTIZATION["per_channel"],
            reduce_range=QUANTIZATION["reduce_range"],
            nodes_to_exclude=list(exclude),
        )
    finally:
        logging.disable(logging.NOTSET)


def activation_outlier_ratios(fp32_path: Path, feeds: Sequence[dict[str, Any]]) -> dict[str, float]:
    """For each MatMul with constant weights: max |input| / RMS(input) over ``feeds`` (node name -> ratio).

    Dynamic quantization gives each activation tensor one uint8 scale, so a tensor with a few huge
    outlier features (BERT/MPNet feed-forward outputs reach 200x their RMS) loses almost all resolution
    for the ordinary values. The ratio ranks the MatMuls by how much int8 hurts them.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(fp32_path))
    initializers = {i.name for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    watched: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.name and len(node.input) == 2 and node.input[1] in initializers:
            watched[node.name] = node.input[0]
            if node.input[0] not in outputs:
                model.graph.output.append(
                    helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None)
                )
                outputs.add(node.input[0])
    if not watched:
        return {}
    probe = _temp_path(fp32_path.parent, "probe.onnx")
    try:
        onnx.save(model, str(probe))
        del model
        session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
        names = sorted(set(watched.values()))
        peak = dict.fromkeys(names, 0.0)
        squares = dict.fromkeys(names, 0.0)
        counts = dict.fromkeys(names, 0)
        for feed in feeds:
            for name, value in zip(names, session.run(names, feed), strict=True):
                value = value.astype(np.float64)
                peak[name] = max(peak[name], float(np.abs(value).max()))
                squares[name] += float((value**2).sum())
                counts[name] += value.size
        rms = {n: (squares[n] / max(counts[n], 1)) ** 0.5 for n in names}
        return {node: peak[t] / max(rms[t], 1e-12) for node, t in watched.items()}
    finally:
        _remove(probe)


def exclusion_steps(ratios: dict[str, float]) -> list[list[str]]:
    """Growing sets of MatMuls to keep in fp32: none, then those far above the median outlier ratio."""
    import statistics

    steps: list[list[str]] = [[]]
    if not ratios:
        return steps
    median = statistics.median(ratios.values())
    for factor in OUTLIER_FACTORS:
        nodes = sorted(n for n, r in ratios.items() if r > factor * median)
        if nodes and nodes != steps[-1] and len(nodes) <= len(ratios) // 2:
            steps.append(nodes)
    return steps


# -- the check ----------------------------------------------------------------------------------------


def _check_texts(model) -> tuple[list[str], list[str]]:
    # One document longer than the model's sequence limit, so that truncation is checked too.
    words = " ".join(SAMPLE_DOCUMENTS).split()
    target = (model.max_seq_length or 512) + 64
    long_doc = " ".join(words[i % len(words)] for i in range(target))
    return list(SAMPLE_QUERIES), [*SAMPLE_DOCUMENTS, long_doc]


def _torch_reference(model, queries: list[str], documents: list[str]):
    import numpy as np

    q = model.encode_query(queries, batch_size=8, convert_to_numpy=True, show_progress_bar=False)
    d = model.encode_document(documents, batch_size=4, convert_to_numpy=True, show_progress_bar=False)
    return np.concatenate([q, d]).astype(np.float32)


def _cut_end_diff(model, encoder, text: str, end_token: int) -> float:
    """Max abs difference to PyTorch on ``text`` tokenized as transformers.js does at the limit: special
    tokens added first, then cut, so the end token is lost."""
    import numpy as np

    limit = int(model.max_seq_length)
    ids = model[0].tokenizer(text, truncation=False)["input_ids"]
    if len(ids) <= limit:
        return 0.0
    ids = ids[:limit]
    if ids[-1] == end_token:  # nothing was lost: not a check of the restoration
        return 0.0
    feed = {"input_ids": np.asarray([ids], dtype=np.int64), "attention_mask": np.ones((1, limit), np.int64)}
    if "token_type_ids" in encoder.input_names:
        feed["token_type_ids"] = np.zeros((1, limit), np.int64)
    (got,) = encoder.session.run(["sentence_embedding"], feed)
    reference = model.encode([text], convert_to_numpy=True, show_progress_bar=False)
    return float(np.abs(got - reference).max())


def _onnx_embeddings(encoder, queries: list[str], documents: list[str]):
    import numpy as np

    return np.concatenate(
        [encoder.encode_query(queries, batch_size=8), encoder.encode_document(documents, batch_size=4)]
    )


def _token_max_abs_diff(model, encoder, texts: list[str]) -> float:
    """Largest difference of ``last_hidden_state`` on non-pad tokens, relative to the states' scale."""
    import numpy as np
    import torch

    feed = encoder.tokenize(texts)
    (onnx_states,) = encoder.session.run(["last_hidden_state"], feed)
    kwargs = {k: torch.from_numpy(v) for k, v in feed.items()}
    with torch.no_grad():
        states = model[0].auto_model(**kwargs, return_dict=True).last_hidden_state.numpy()
    mask = feed["attention_mask"].astype(bool)
    scale = max(1.0, float(np.abs(states[mask]).max()))
    return float(np.abs(onnx_states[mask] - states[mask]).max()) / scale


def _quantize_checked(
    fp32_path: Path,
    int8_path: Path,
    model_dir: Path,
    queries: list[str],
    documents: list[str],
    reference,
    min_cosine: float,
    report: ExportReport,
) -> None:
    """Quantize, keeping more outlier-input MatMuls in fp32 until the int8 model passes its check."""
    from leaf_hub.export.onnx_encoder import OnnxEncoder

    fp32_encoder = OnnxEncoder(model_dir, onnx_file=fp32_path)
    feeds = [fp32_encoder.tokenize(queries), fp32_encoder.tokenize(documents)]
    del fp32_encoder
    ratios: dict[str, float] | None = None
    tried: list[str] = []
    step = 0
    steps: list[list[str]] = [[]]
    while step < len(steps):
        exclude = steps[step]
        logger.info("quantizing to int8 (%s, %d MatMuls kept in fp32)", QUANTIZATION, len(exclude))
        quantize(fp32_path, int8_path, exclude)
        int8 = _onnx_embeddings(OnnxEncoder(model_dir, onnx_file=int8_path), queries, documents)
        cos = _cosines(int8, reference)
        logger.info("int8 mean cosine %.4f (min %.4f)", cos.mean(), cos.min())
        tried.append(f"{len(exclude)} MatMuls in fp32 -> mean cosine {cos.mean():.4f}")
        if cos.mean() >= min_cosine:
            report.int8_file = f"{ONNX_SUBFOLDER}/{INT8_FILE}"
            report.int8_mean_cosine = float(cos.mean())
            report.int8_min_cosine = float(cos.min())
            report.quantization = {**QUANTIZATION, "fp32_matmuls": exclude}
            return
        if ratios is None:
            logger.info("measuring activation outliers to choose MatMuls to keep in fp32")
            ratios = activation_outlier_ratios(fp32_path, feeds)
            steps = exclusion_steps(ratios)
        step += 1
    raise LeafHubError(
        f"the int8 model is too far from PyTorch (mean cosine below {min_cosine}: {'; '.join(tried)}); "
        "export with --no-quantize to ship the fp32 graph only"
    )


def _cosines(a, b):
    import numpy as np

    return (a * b).sum(1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None)


# -- the command --------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import sentence_transformers
    import torch
    import transformers

    import leaf_hub

    return {
        "leaf_hub": leaf_hub.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def export_model(
    model_name_or_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    quantize_int8: bool = True,
    opset: int = 17,
    exporter: str = "torchscript",
    max_abs_diff: float = MAX_ABS_DIFF,
    min_int8_cosine: float = MIN_INT8_COSINE,
    model=None,
) -> ExportReport:
    """Export a sentence-transformers model to ``OUTPUT/onnx/`` and check the result.

    ``output_dir`` defaults to the model folder itself. When it is another folder (always for a Hub id),
    the sentence-transformers model is saved there too, so it is a complete model folder that
    :class:`~leaf_hub.export.onnx_encoder.OnnxEncoder` and ``SentenceTransformer`` both load (in the portable
    layout of :func:`leaf_hub.leaf.make_portable`). ``model`` may pass the already loaded model of
    ``model_name_or_path``. Needs the ``onnx`` extra, checked before anything is loaded or written.
    """
    from leaf_hub.extras import require

    require("onnx", what="exporting to ONNX")
    if exporter not in ("torchscript", "dynamo"):
        raise LeafHubError(f"unknown exporter {exporter!r}; use 'torchscript' or 'dynamo'")
    import numpy as np
    import torch

    from leaf_hub.export.onnx_encoder import OnnxEncoder
    from leaf_hub.leaf import make_portable
    from leaf_hub.models import load_model

    started = time.perf_counter()
    source = Path(str(model_name_or_path)).expanduser()
    if output_dir is None:
        name = str(model_name_or_path)
        if not source.is_dir() and (
            source.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
        ):
            raise LeafHubError(f"model folder {name!r} does not exist; give a model folder or a Hub id")
        if not source.is_dir():
            raise LeafHubError(
                f"{model_name_or_path!r} is not a local folder, so there is nowhere to put onnx/ next to it; "
                "give --output DIR (the model is saved there with its ONNX files)"
            )
        output = source
    else:
        output = Path(output_dir).expanduser()
    if model is None:
        model = load_model(model_name_or_path, device="cpu")
    model.eval()
    check_exportable(model)

    output.mkdir(parents=True, exist_ok=True)
    if output.resolve() != (source.resolve() if source.is_dir() else None):
        logger.info("saving the sentence-transformers model to %s", output)
        model.save(str(output))
    # Older sentence-transformers load the folder too (a leaf saved by an earlier leaf-hub gets converted).
    changed = make_portable(output, max_seq_length=model.max_seq_length)
    if changed and output.resolve() == (source.resolve() if source.is_dir() else None):
        logger.info("rewrote %s in the layout every sentence-transformers release loads", ", ".join(changed))
    onnx_dir = output / ONNX_SUBFOLDER
    made_onnx_dir = not onnx_dir.is_dir()
    onnx_dir.mkdir(exist_ok=True)
    # Temporary names in the same folder: renamed only after both checks pass.
    tmp_fp32, tmp_int8 = (_temp_path(onnx_dir, name) for name in (FP32_FILE, INT8_FILE))
    try:
        logger.info("exporting %s to ONNX (%s exporter, opset %d)", model_name_or_path, exporter, opset)
        input_names = export_graph(model, tmp_fp32, opset=opset, exporter=exporter)

        queries, documents = _check_texts(model)
        logger.info("checking the fp32 graph against PyTorch on %d texts", len(queries) + len(documents))
        with torch.no_grad():
            reference = _torch_reference(model, queries, documents)
        encoder = OnnxEncoder(output, onnx_file=tmp_fp32)
        fp32 = _onnx_embeddings(encoder, queries, documents)
        diff = float(np.abs(fp32 - reference).max())
        token_diff = _token_max_abs_diff(model, encoder, queries[:4] + documents[:2])
        if diff > max_abs_diff or token_diff > max_abs_diff * 10:
            raise LeafHubError(
                f"the exported graph differs from PyTorch: max abs difference {diff:.2e} on sentence embeddings "
                f"(limit {max_abs_diff:.0e}), {token_diff:.2e} on token states; this model's architecture does "
                "not export faithfully: try --exporter dynamo or a newer torch/transformers"
            )
        logger.info("fp32 max abs difference %.2e (token states %.2e)", diff, token_diff)
        end_token = end_token_id(model)
        cut_diff = None
        if end_token is not None:
            cut_diff = _cut_end_diff(model, encoder, documents[-1], end_token)
            if cut_diff > max_abs_diff:
                raise LeafHubError(
                    f"the exported graph does not restore the end token of a text cut at the limit (max abs "
                    f"difference {cut_diff:.2e}); this is a leaf-hub bug: please report it"
                )

        report = ExportReport(
            model=str(model_name_or_path),
            fp32_file=f"{ONNX_SUBFOLDER}/{FP32_FILE}",
            int8_file=None,
            exporter=exporter,
            opset=opset if exporter == "torchscript" else max(opset, 18),
            inputs=input_names,
            outputs=list(OUTPUT_NAMES),
            max_seq_length=int(model.max_seq_length),
            check_texts=len(queries) + len(documents),
            fp32_max_abs_diff=diff,
            fp32_token_max_abs_diff=token_diff,
            end_token_id=end_token,
            fp32_cut_end_max_abs_diff=cut_diff,
        )
        if quantize_int8:
            _quantize_checked(
                tmp_fp32, tmp_int8, output, queries, documents, reference, min_int8_cosine, report
            )

        report.seconds = round(time.perf_counter() - started, 1)
        report.versions = _versions()
        _publish(tmp_fp32, onnx_dir / FP32_FILE)
        if quantize_int8:
            _publish(tmp_int8, onnx_dir / INT8_FILE)
        else:  # an int8 file from an earlier export would no longer match model.onnx
            (onnx_dir / INT8_FILE).unlink(missing_ok=True)
        _write_json(onnx_dir / REPORT_FILE, asdict(report))
        return report
    finally:
        _remove(tmp_fp32, tmp_int8)
        if made_onnx_dir and not any(onnx_dir.iterdir()):
            onnx_dir.rmdir()  # a failed first export leaves no empty onnx/ that looks like a start


def onnx_cache_dir() -> Path:
    """``$LEAF_HUB_CACHE/onnx`` when set, else ``~/.cache/leaf-hub/onnx``."""
    root = os.environ.get("LEAF_HUB_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "leaf-hub") / "onnx"


def has_whole_graph(model_dir: Path, quantized: bool = False) -> bool:
    """Whether ``model_dir/onnx/`` holds a whole-model graph (with ``sentence_embedding``), not a bare transformer."""
    onnx_dir = Path(model_dir) / ONNX_SUBFOLDER
    files = [onnx_dir / FP32_FILE] + ([onnx_dir / INT8_FILE] if quantized else [])
    if not all(f.is_file() for f in files):
        return False
    if (onnx_dir / REPORT_FILE).is_file():
        return True
    import onnx

    graph = onnx.load(str(onnx_dir / FP32_FILE), load_external_data=False).graph
    return "sentence_embedding" in {o.name for o in graph.output}


def _is_report(rel: Path) -> bool:
    """Files written next to a model about it (card, reports, plots): they do not change its embeddings,
    so writing them (``leaf-hub evaluate`` does, into the leaf folder) must not force a new export."""
    return rel.suffix == ".png" or (
        len(rel.parts) == 1
        and (rel.name == "README.md" or re.fullmatch(r"(eval|bench)_report.*\.json", rel.name) is not None)
    )


def _source_key(model_name_or_path: str | os.PathLike) -> tuple[Path | None, str]:
    """(local folder or None, a key that changes whenever the model's files do)."""
    import hashlib

    path = Path(str(model_name_or_path)).expanduser()
    digest = hashlib.sha256(f"format {EXPORT_FORMAT}\n".encode())
    if path.is_dir():
        digest.update(str(path.resolve()).encode())
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if f.is_file() and rel.parts[0] != ONNX_SUBFOLDER and not _is_report(rel):
                stat = f.stat()
                digest.update(f"{rel}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return path, digest.hexdigest()[:12]
    from huggingface_hub import try_to_load_from_cache

    for filename in ("modules.json", "config.json"):
        cached = try_to_load_from_cache(str(model_name_or_path), filename)
        if isinstance(cached, str):
            # The snapshot folder's name is the commit: a new revision gets a new key.
            digest.update(str(Path(cached).parent.resolve()).encode())
            return None, digest.hexdigest()[:12]
    digest.update(str(model_name_or_path).encode())
    return None, digest.hexdigest()[:12]


def ensure_onnx(
    model_name_or_path: str | os.PathLike,
    quantized: bool = True,
    cache_dir: str | os.PathLike | None = None,
    model=None,
) -> Path:
    """A model folder with a whole-model ``onnx/`` graph for ``model_name_or_path``, exporting it when needed.

    A local folder that has been exported already is returned as it is. Otherwise the model is exported
    once into ``cache_dir`` (default :func:`onnx_cache_dir`), keyed by the model's files or Hub revision,
    and that folder is returned; the user's model folder is never written to.
    """
    import shutil

    from leaf_hub.extras import require

    require("onnx", what="running a model as its ONNX export")
    local, key = _source_key(model_name_or_path)
    if local is not None and has_whole_graph(local, quantized):
        return local
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", str(model_name_or_path).strip("/"))[-80:]
    cache = Path(cache_dir).expanduser() if cache_dir else onnx_cache_dir()
    target = cache / f"{slug}-{key}"
    if has_whole_graph(target, quantized):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Built in a temporary folder and renamed: an interrupted export never looks like a cached one.
    staging = Path(tempfile.mkdtemp(prefix=f".{slug}-", dir=cache))
    try:
        logger.info("exporting %s to ONNX into the cache %s (once)", model_name_or_path, target)
        export_model(model_name_or_path, output_dir=staging, quantize_int8=quantized, model=model)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _temp_path(folder: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    os.close(fd)
    return Path(tmp)


_publish = finish_temp
_write_json = atomic_write_json
