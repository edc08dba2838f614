"""leaf-hub: distil a text-embedding teacher into a small leaf model aligned to its vector space (LEAF).

The pipeline, one function per stage (imported on first use, so ``import leaf_hub`` stays light)::

    from leaf_hub import distill

    result = distill(teacher="sentence-transformers/all-mpnet-base-v2", output="runs/quickstart", max_steps=120)
    print(result.validation.cosine, result.leaf_dir)

============================  ===========================================================
``load_texts``                training texts from ``--data`` specs (files, Hub datasets, generated sets)
``load_teacher``              a teacher: a sentence-transformers model or an OpenAI-style embeddings API
``TeacherCache``              teacher vectors computed once, on disk, resumable
``build_leaf``                student backbone -> mean pooling -> projection (-> normalize)
``distill``                   the whole recipe: texts, teacher cache, warm start, training
``train``                     sentence-transformers' trainer with the leaf's recipe, on prepared TrainData
``build_vocabulary_dataset``  the paper's Vocabulary set (word definitions) from WordNet or a chat API
``evaluate``                  a leaf against its teacher: retrieval, STS, alignment, MRL, quantization
``benchmark``                 leaf and teacher throughput, the paper's Table 8 protocol
``export_onnx``               one ONNX graph with pooling, projection and norm inside, fp32 and int8
``write_pair``                one asymmetric model: the leaf for queries, the teacher for documents
``render_card``               a model or dataset card from a run's facts
``publish``                   push a leaf, pair, dataset or Space folder to the Hub
============================  ===========================================================
"""

from __future__ import annotations

import importlib
from typing import Any

from leaf_hub.errors import ConfigError, LeafHubError

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "DistillConfig": "leaf_hub.training.config",
    "TrainConfig": "leaf_hub.training.config",
    "distill": "leaf_hub.training.distill",
    "DistillResult": "leaf_hub.training.distill",
    "train": "leaf_hub.training.trainer",
    "TrainResult": "leaf_hub.training.trainer",
    "TrainData": "leaf_hub.training.data",
    "warm_start": "leaf_hub.training.warm_start",
    "load_texts": "leaf_hub.data.texts",
    "VocabularyConfig": "leaf_hub.data.vocabulary",
    "build_vocabulary_dataset": "leaf_hub.data.vocabulary",
    "TextSet": "leaf_hub.data.texts",
    "load_teacher": "leaf_hub.teachers",
    "Teacher": "leaf_hub.teachers",
    "TeacherCache": "leaf_hub.teachers.cache",
    "build_leaf": "leaf_hub.leaf",
    "evaluate": "leaf_hub.evaluation.evaluate",
    "EvaluateConfig": "leaf_hub.evaluation.config",
    "EvaluationReport": "leaf_hub.evaluation.report",
    "benchmark": "leaf_hub.evaluation.benchmark",
    "BenchConfig": "leaf_hub.evaluation.config",
    "BenchReport": "leaf_hub.evaluation.bench_report",
    "load_model": "leaf_hub.models",
    "export_onnx": "leaf_hub.export.onnx",
    "OnnxEncoder": "leaf_hub.export.onnx_encoder",
    "write_pair": "leaf_hub.export.pair",
    "render_card": "leaf_hub.hub.card",
    "publish": "leaf_hub.hub.publish",
}
_ALIASES = {"export_onnx": "export_model"}

__all__ = ["ConfigError", "LeafHubError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'leaf_hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
