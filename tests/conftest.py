"""Shared fixtures: tiny in-process models for unit tests, the PyPI-shipped models for integration tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never reach the Hub: everything is local folders or the offline cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_model  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TEACHER_ID = "sentence-transformers/all-mpnet-base-v2"
STUDENT_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A 48-d normalized teacher with a query prompt and a cased tokenizer (unlike the student's)."""
    folder = tmp_path_factory.mktemp("tiny_teacher")
    build_tiny_model(folder, hidden=48, normalize=True, seed=1, prompts={"query": "query: "}, lowercase=False)
    return folder


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory) -> Path:
    """A 32-d student backbone (Transformer + mean pooling)."""
    folder = tmp_path_factory.mktemp("tiny_student")
    build_tiny_model(folder, hidden=32, normalize=False, seed=2)
    return folder


@pytest.fixture(scope="session")
def tiny_leaf_dir(tmp_path_factory, tiny_student_dir, tiny_teacher_dir) -> Path:
    """An untrained leaf of the tiny student for the tiny teacher (48-d, normalized, query prompt)."""
    from sentence_transformers import SentenceTransformer

    from leaf_hub.leaf import build_leaf

    folder = tmp_path_factory.mktemp("tiny_leaf")
    student = SentenceTransformer(str(tiny_student_dir), device="cpu")
    leaf = build_leaf(
        student, teacher_dim=48, normalize=True, prompts={"query": "query: "}, max_seq_length=64
    )
    leaf.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def offline_models() -> dict[str, Path]:
    """The real PyPI-shipped teacher and student, installed into the HF cache (integration tests)."""
    from leaf_hub.hub.offline_models import install_offline_models

    return install_offline_models()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not there (the project's development data sits beside the checkout)")
    return SHARED


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """The local Hub, with huggingface_hub pointed at it, online, and no token from the environment."""
    from hub_server import HubServer
    from huggingface_hub import constants

    server = HubServer(tmp_path / "hub-storage").start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # The local Hub speaks Git LFS, not Xet (whose storage service it does not run): huggingface_hub then
    # uploads large files through the LFS batch API, its documented path without hf_xet.
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    yield server
    server.stop()
