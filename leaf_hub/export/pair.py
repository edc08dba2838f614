"""``leaf-hub pair``: one asymmetric sentence-transformers model, the leaf for queries and the teacher for documents.

LEAF's point is that a leaf lives in its teacher's vector space, so documents can be embedded once with the
large teacher while queries are embedded at query time with the small leaf. This writes that setup as one
ordinary sentence-transformers model: a :class:`~sentence_transformers.base.modules.Router` whose "query"
route is the leaf's module stack and whose "document" route is the teacher's, so that

    model = SentenceTransformer("OUT")
    model.encode_query(queries)      # == leaf.encode_query(queries)
    model.encode_document(documents)  # == teacher.encode_document(documents)

Plain ``model.encode`` (no task) takes the document route, i.e. behaves as the teacher. Each route keeps
its own tokenizer and sequence length. The prompts are the leaf's query prompt and the teacher's document
prompt. The pair is checked after writing: loaded back, it must reproduce both models on a few texts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

PAIR_MANIFEST = "leaf_pair.json"
_CHECK_QUERIES = ["how do leaf models embed queries", "capital of australia"]
_CHECK_DOCUMENTS = [
    "Canberra is the capital city of Australia, chosen as a compromise between Sydney and Melbourne."
]


def _leaf_run(leaf_dir: Path):
    """The facts of the run that made the leaf (``leaf_run.json``), or None for a leaf made elsewhere."""
    from leaf_hub.training.distill import DistillResult

    return DistillResult.find(leaf_dir)


def check_compatible(
    leaf, teacher, leaf_dir: Path | None = None, teacher_name: str = "", force: bool = False
) -> None:
    """Raise :class:`LeafHubError` when ``leaf`` cannot have been distilled from ``teacher``."""
    from leaf_hub.models import is_normalized, weights_fingerprint

    d_leaf, d_teacher = leaf.get_embedding_dimension(), teacher.get_embedding_dimension()
    if d_leaf != d_teacher:
        raise LeafHubError(
            f"the leaf embeds in {d_leaf} dimensions but the teacher {teacher_name!r} in {d_teacher}: the leaf "
            "was not distilled from this teacher, so their vectors are not comparable; give the teacher it "
            "was distilled from (see its leaf_run.json)"
        )
    if is_normalized(leaf) != is_normalized(teacher):
        logger.warning(
            "the leaf %s normalized embeddings but the teacher %s: cosine similarity still works, dot product does not",
            "produces" if is_normalized(leaf) else "does not produce",
            "does" if is_normalized(teacher) else "does not",
        )
    run = _leaf_run(leaf_dir) if leaf_dir else None
    recorded = run.teacher_fingerprint if run else None
    if recorded:
        actual = weights_fingerprint(teacher)
        if actual != recorded:
            message = (
                f"leaf_run.json says the leaf was distilled from {run.teacher!r} (weights fingerprint "
                f"{recorded}) but the teacher given, {teacher_name!r}, has fingerprint {actual}"
            )
            if not force:
                raise LeafHubError(f"{message}; give that teacher, or pass --force to pair them anyway")
            logger.warning("%s; pairing anyway (--force)", message)


def build_pair(leaf, teacher):
    """The asymmetric SentenceTransformer: Router(query -> leaf modules, document -> teacher modules)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.router import Router

    from leaf_hub.models import document_prompt, query_prompt

    router = Router.for_query_document(
        query_modules=list(leaf.children()),
        document_modules=list(teacher.children()),
        default_route="document",
    )
    prompts = {"query": query_prompt(leaf), "document": document_prompt(teacher)}
    return SentenceTransformer(
        modules=[router],
        prompts=prompts,
        similarity_fn_name=teacher.similarity_fn_name or "cosine",
        device="cpu",
    )


def verify_pair(folder: Path, leaf, teacher, atol: float = 1e-5) -> float:
    """Load the written pair and check it reproduces the leaf on queries and the teacher on documents."""
    import numpy as np

    from leaf_hub.models import load_model

    pair = load_model(folder, device="cpu")

    def encode(method, texts):
        return method(texts, convert_to_numpy=True, show_progress_bar=False)

    worst = 0.0
    for a, b in (
        (encode(pair.encode_query, _CHECK_QUERIES), encode(leaf.encode_query, _CHECK_QUERIES)),
        (encode(pair.encode_document, _CHECK_DOCUMENTS), encode(teacher.encode_document, _CHECK_DOCUMENTS)),
    ):
        worst = max(worst, float(np.abs(np.asarray(a) - np.asarray(b)).max()))
    if worst > atol:
        raise LeafHubError(
            f"the written pair does not reproduce the leaf/teacher (max abs difference {worst:.1e}); "
            "this sentence-transformers version routes differently: please report it"
        )
    return worst


def write_pair(
    leaf_dir: str | os.PathLike,
    teacher: str | os.PathLike,
    output: str | os.PathLike,
    force: bool = False,
    verify: bool = True,
) -> Path:
    """Write the asymmetric model for ``leaf_dir`` and ``teacher`` to ``output`` (replaced atomically)."""
    import leaf_hub
    from leaf_hub.models import load_model

    leaf_path = Path(leaf_dir).expanduser()
    if not leaf_path.is_dir():
        raise LeafHubError(
            f"leaf folder {str(leaf_dir)!r} does not exist; give the folder of a distilled leaf"
        )
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise LeafHubError(f"output {str(output)!r} is a file; give a folder to write the pair into")
    if out.resolve() in (leaf_path.resolve(), Path(str(teacher)).expanduser().resolve()):
        raise LeafHubError("the output folder is the leaf's or the teacher's folder; give a new folder")
    leaf = load_model(leaf_path, device="cpu")
    teacher_model = load_model(teacher, device="cpu")
    check_compatible(leaf, teacher_model, leaf_path, str(teacher), force=force)
    pair = build_pair(leaf, teacher_model)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        pair.save(str(staging))
        manifest = {
            "leaf": str(leaf_dir),
            "teacher": str(teacher),
            "routes": {"query": "leaf", "document": "teacher"},
            "leaf_run": run_facts.to_json() if (run_facts := _leaf_run(leaf_path)) else None,
            "leaf_hub_version": leaf_hub.__version__,
        }
        with open(staging / PAIR_MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        if verify:
            worst = verify_pair(staging, leaf, teacher_model)
            logger.info("pair checked: max abs difference to leaf/teacher %.1e", worst)
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
