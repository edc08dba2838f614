"""The mteb adapter: query/document routing, and a real mteb retrieval run that agrees with leaf-hub's metric.

Skipped when mteb (the ``mteb`` extra) is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from datasets import Dataset  # noqa: E402
from eval_helpers import synthetic_beir  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from leaf_hub.errors import LeafHubError  # noqa: E402
from leaf_hub.evaluation.mteb_adapter import LeafMtebEncoder, mteb_encoder  # noqa: E402
from leaf_hub.evaluation.retrieval import evaluate_embeddings, load_beir_folder  # noqa: E402


@pytest.fixture(scope="module")
def models(tiny_teacher_dir, tiny_leaf_dir):
    return SentenceTransformer(str(tiny_teacher_dir), device="cpu"), SentenceTransformer(
        str(tiny_leaf_dir), device="cpu"
    )


def _loader(texts):
    return DataLoader(Dataset.from_dict({"text": texts}), batch_size=3)


def test_routing(models):
    from mteb.models.models_protocols import EncoderProtocol
    from mteb.types import PromptType

    teacher, leaf = models
    pair = LeafMtebEncoder(leaf, teacher)
    assert isinstance(pair, EncoderProtocol)
    assert pair.mteb_model_meta.embed_dim == 48
    assert pair.mteb_model_meta.name.endswith("-asymmetric")
    texts = ["what is a cat", "the dog in the house", "red car", "music and science"]
    meta = mteb.get_task("SciFact").metadata
    kw = {"task_metadata": meta, "hf_split": "test", "hf_subset": "default"}
    np.testing.assert_allclose(
        pair.encode(_loader(texts), prompt_type=PromptType.query, **kw), leaf.encode_query(texts), atol=1e-5
    )
    np.testing.assert_allclose(
        pair.encode(_loader(texts), prompt_type=PromptType.document, **kw),
        teacher.encode_document(texts),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        pair.encode(_loader(texts), prompt_type=None, **kw), leaf.encode(texts), atol=1e-5
    )
    alone = LeafMtebEncoder(leaf)
    np.testing.assert_allclose(
        alone.encode(_loader(texts), prompt_type=PromptType.document, **kw),
        leaf.encode_document(texts),
        atol=1e-5,
    )
    a = np.eye(2, 48, dtype=np.float32)
    assert pair.similarity(a, a).shape == (2, 2)
    assert pair.similarity_pairwise(a, a).tolist() == pytest.approx([1.0, 1.0])


def test_mismatched_pair(tiny_leaf_dir, tiny_student_dir):
    with pytest.raises(LeafHubError, match="not distilled from this teacher"):
        mteb_encoder(tiny_leaf_dir, tiny_student_dir)


def test_mteb_retrieval_agrees_with_leaf_hub(models, tmp_path):
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    teacher, leaf = models
    ds = load_beir_folder(synthetic_beir(tmp_path / "syn", n_docs=80, n_queries=15, seed=3))

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            type="Retrieval",
            name="LeafHubLocalRetrieval",
            main_score="ndcg_at_10",
            description="leaf-hub test collection",
            reference="https://example.org",
            dataset={"path": "NA", "revision": "NA"},
            category="t2t",
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            date=("2025-01-01", "2025-01-01"),
            dialect=["Written"],
            domains=[],
            task_subtypes=[],
            license="cc-by-4.0",
            annotations_creators="derived",
            modalities=["text"],
            sample_creation="found",
            bibtex_citation="",
        )

        def load_data(self, num_proc=None, **kwargs):
            judged = ds.judged
            split = RetrievalSplitData(
                queries=Dataset.from_list([{"id": ds.query_ids[i], "text": ds.queries[i]} for i in judged]),
                corpus=Dataset.from_list(
                    [{"id": i, "text": t} for i, t in zip(ds.doc_ids, ds.docs, strict=True)]
                ),
                relevant_docs=ds.qrels,
                top_ranked=None,
            )
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    pair = LeafMtebEncoder(leaf, teacher)
    result = mteb.evaluate(pair, LocalRetrieval(), cache=None, show_progress_bar=False)
    score = result.task_results[0].scores["test"][0]["ndcg_at_10"]
    ours = evaluate_embeddings(ds, leaf.encode_query(ds.queries), teacher.encode_document(ds.docs))["ndcg@10"]
    assert score == pytest.approx(ours, abs=1e-4)
