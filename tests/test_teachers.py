"""Teachers: a sentence-transformers model, and an OpenAI-compatible API served by a real local HTTP server."""

from __future__ import annotations

import time

import numpy as np
import pytest
from embedding_server import EmbeddingServer, free_port, serve_embeddings

from leaf_hub.errors import LeafHubError
from leaf_hub.teachers import HttpTeacher, SentenceTransformerTeacher, Teacher, load_teacher

TEXTS = [
    "What is a leaf model?",
    "the teacher and the student",
    "A small model whose embeddings live in the vector space of a much larger teacher model.",
    "cat",
    "Why is the sky blue?",
    "data network information library book paper study result method system",
    "one two three",
    "fast slow good bad new old first last",
    "where is the music history of the city",
    "how do dogs learn language",
]
FAST = {"backoff": 0.01, "max_backoff": 0.05}  # keep retries quick in tests


@pytest.fixture(scope="module")
def tiny_model(tiny_teacher_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_teacher_dir), device="cpu")


@pytest.fixture()
def no_key_env(monkeypatch):
    for name in (
        "LEAF_HUB_TEACHER_API_KEY",
        "OPENAI_API_KEY",
        "LEAF_HUB_TEACHER_URL",
        "LEAF_HUB_TEACHER_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_sentence_transformer_teacher(tiny_teacher_dir, tiny_model):
    from leaf_hub.models import weights_fingerprint

    teacher = load_teacher(str(tiny_teacher_dir))
    assert isinstance(teacher, SentenceTransformerTeacher) and isinstance(teacher, Teacher)
    assert teacher.name == str(tiny_teacher_dir)
    assert teacher.dimension == 48 and teacher.normalized is True and teacher.max_seq_length == 64
    assert teacher.prompts == {"query": "query: ", "document": ""}
    assert teacher.fingerprint == weights_fingerprint(tiny_model)
    queries = teacher.encode(TEXTS, "query")
    documents = teacher.encode(TEXTS, "document")
    assert queries.dtype == np.float32 and queries.shape == (len(TEXTS), 48)
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(queries, tiny_model.encode_query(TEXTS), atol=1e-5)
    np.testing.assert_allclose(documents, tiny_model.encode(TEXTS, prompt=""), atol=1e-5)
    assert not np.allclose(queries, documents, atol=1e-3)  # the query prompt is applied
    assert teacher.encode([], "query").shape == (0, 48)
    with pytest.raises(ValueError):
        teacher.encode(TEXTS, "passage")

    lengths = teacher.token_lengths(["cat", "the cat and the dog", "word " * 500])
    assert lengths[0] < lengths[1] < lengths[2] == 64  # capped at max_seq_length

    overridden = load_teacher(str(tiny_teacher_dir), query_prompt="search_query: ", document_prompt="doc: ")
    assert overridden.prompts == {"query": "search_query: ", "document": "doc: "}
    np.testing.assert_allclose(
        overridden.encode(TEXTS[:3], "document"), tiny_model.encode(TEXTS[:3], prompt="doc: "), atol=1e-5
    )


def test_http_teacher_matches_the_model(tiny_model, no_key_env):
    local = SentenceTransformerTeacher(tiny_model)
    with serve_embeddings(tiny_model) as server:
        teacher = HttpTeacher(
            server.url, model=server.model_name, batch_size=4, query_prompt="query: ", **FAST
        )
        assert isinstance(teacher, Teacher)
        assert teacher.dimension == 48 and teacher.normalized is True and teacher.max_seq_length is None
        assert teacher.name == server.model_name
        assert teacher.fingerprint == f"api:{server.url}:{server.model_name}"
        assert teacher.prompts == {"query": "query: ", "document": ""}
        # The server shuffles the answer's items: the client must put them back in order by index.
        for kind in ("query", "document"):
            got = teacher.encode(TEXTS, kind)
            assert got.dtype == np.float32 and got.shape == (len(TEXTS), 48)
            np.testing.assert_allclose(got, local.encode(TEXTS, kind), atol=1e-5)
        lengths = teacher.token_lengths(["a", "x" * 400])
        assert lengths == [1, 100]
        teacher.close()


def test_http_teacher_batches_requests(tiny_model, no_key_env):
    with serve_embeddings(tiny_model) as server:
        teacher = HttpTeacher(server.url, model=server.model_name, batch_size=4, **FAST)
        assert server.requests == 1 and server.batch_sizes == [2]  # the probe
        first = teacher.encode(TEXTS, "document")
        assert server.batch_sizes[1:] == [4, 4, 2]
        parallel = HttpTeacher(server.url, model=server.model_name, batch_size=3, concurrency=3, **FAST)
        before = server.requests
        np.testing.assert_allclose(parallel.encode(TEXTS, "document"), first, atol=1e-5)
        assert server.requests - before == 4 and sorted(server.batch_sizes[-4:]) == [1, 3, 3, 3]


@pytest.mark.parametrize("status", [429, 503])
def test_http_teacher_retries_then_succeeds(tiny_model, no_key_env, status):
    with serve_embeddings(tiny_model, fail_first=3, fail_status=status) as server:
        teacher = HttpTeacher(
            server.url, model=server.model_name, batch_size=5, **FAST
        )  # probe retried 3 times
        assert server.requests == 4 and teacher.dimension == 48
        server.fail_first = server.requests + 2  # the next two requests fail: inside encode
        got = teacher.encode(TEXTS, "document")
        assert server.requests == 4 + 2 + 2 and server.ok_requests == 3
        np.testing.assert_allclose(got, server.embed(TEXTS), atol=1e-5)


def test_http_teacher_honours_retry_after(tiny_model, no_key_env):
    with serve_embeddings(tiny_model, fail_first=1, fail_status=429, retry_after=1) as server:
        start = time.monotonic()
        HttpTeacher(server.url, model=server.model_name, **FAST)
        assert time.monotonic() - start >= 0.95  # backoff alone would wait at most 0.05 s
        assert server.requests == 2


def test_http_teacher_gives_up_after_max_retries(tiny_model, no_key_env):
    with serve_embeddings(tiny_model, fail_first=100, fail_status=503) as server:
        with pytest.raises(LeafHubError) as err:
            HttpTeacher(server.url, model=server.model_name, max_retries=2, **FAST)
        assert server.requests == 3
    msg = str(err.value)
    assert server.url in msg and "after 3 tries" in msg and "HTTP 503" in msg


def test_http_teacher_401_says_how_to_set_the_key(tiny_model, no_key_env):
    with serve_embeddings(tiny_model, api_key="s3cret") as server:
        with pytest.raises(LeafHubError) as err:
            HttpTeacher(server.url, model=server.model_name, **FAST)
        msg = str(err.value)
        assert "HTTP 401" in msg and "no API key was given" in msg and "LEAF_HUB_TEACHER_API_KEY" in msg
        assert "Incorrect API key" in msg and server.requests == 1  # a 4xx is not retried
        with pytest.raises(LeafHubError, match="check the key"):
            HttpTeacher(server.url, model=server.model_name, api_key="wrong", **FAST)
        # The key from the environment, and OpenAI's variable as the fallback.
        no_key_env.setenv("OPENAI_API_KEY", "s3cret")
        assert HttpTeacher(server.url, model=server.model_name, **FAST).dimension == 48
        no_key_env.setenv("LEAF_HUB_TEACHER_API_KEY", "wrong")
        with pytest.raises(LeafHubError, match="HTTP 401"):
            HttpTeacher(server.url, model=server.model_name, **FAST)
        no_key_env.setenv("LEAF_HUB_TEACHER_API_KEY", "s3cret")
        teacher = load_teacher(server.url, api_model=server.model_name, **FAST)
        assert isinstance(teacher, HttpTeacher) and teacher.encode(TEXTS[:2], "query").shape == (2, 48)


def test_http_teacher_unknown_model_and_bad_route(tiny_model, no_key_env):
    with serve_embeddings(tiny_model) as server:
        with pytest.raises(LeafHubError) as err:
            HttpTeacher(server.url, model="no-such-model", **FAST)
        assert "HTTP 404" in str(err.value) and "no-such-model" in str(err.value) and server.requests == 1
        base = server.url.removesuffix("/v1")
        with pytest.raises(LeafHubError, match="ends in /v1"):
            HttpTeacher(base, model=server.model_name, **FAST)
        # The full endpoint works as a base URL too.
        assert (
            HttpTeacher(server.url + "/embeddings", model=server.model_name, **FAST).url
            == server.url + "/embeddings"
        )


def test_http_teacher_unreachable_fails_fast(no_key_env):
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    with pytest.raises(LeafHubError) as err:
        load_teacher(
            url, api_model="any", max_retries=6
        )  # default backoff: connection errors still fail fast
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert url in msg and "unreachable" in msg and "server is running" in msg


def test_http_teacher_timeout(tiny_model, no_key_env):
    with serve_embeddings(tiny_model, delay=1.0) as server, pytest.raises(LeafHubError) as err:
        HttpTeacher(server.url, model=server.model_name, timeout=0.2, max_retries=1, **FAST)
    assert "did not answer within 0.2s" in str(err.value)


def test_http_teacher_dimensions_and_config_errors(tiny_model, no_key_env):
    with serve_embeddings(tiny_model) as server:
        teacher = HttpTeacher(server.url, model=server.model_name, dimensions=16, **FAST)
        assert teacher.dimension == 16 and teacher.normalized
        assert teacher.encode(TEXTS, "document").shape == (len(TEXTS), 16)
        no_key_env.setenv("LEAF_HUB_TEACHER_URL", server.url)
        no_key_env.setenv("LEAF_HUB_TEACHER_MODEL", server.model_name)
        from_env = load_teacher("api")
        assert isinstance(from_env, HttpTeacher) and from_env.name == server.model_name
    no_key_env.delenv("LEAF_HUB_TEACHER_MODEL")
    with pytest.raises(LeafHubError, match="no model name"):
        load_teacher("http://127.0.0.1:1/v1")
    with pytest.raises(LeafHubError, match="batch size 0"):
        HttpTeacher("http://127.0.0.1:1/v1", model="m", batch_size=0)
    with pytest.raises(LeafHubError, match="must start with http"):
        HttpTeacher("ftp://example/v1", model="m")
    no_key_env.delenv("LEAF_HUB_TEACHER_URL")
    with pytest.raises(LeafHubError, match="no teacher given"):
        load_teacher("")


def test_load_teacher_unknown_model(tmp_path):
    with pytest.raises(LeafHubError, match="unknown model"):
        load_teacher("nobody/no-such-model-anywhere")
    with pytest.raises(LeafHubError, match="apply to API teachers only"):
        load_teacher(str(tmp_path), max_retries=1)


def test_server_counts_and_stops(tiny_model):
    server = EmbeddingServer(tiny_model).start()
    url = server.url
    server.stop()
    with pytest.raises(LeafHubError, match="unreachable"):
        HttpTeacher(url, model="tiny-embedder", **FAST)


@pytest.mark.integration
def test_real_teacher_properties(offline_models):
    teacher = load_teacher("sentence-transformers/all-mpnet-base-v2")
    assert teacher.dimension == 768 and teacher.normalized and teacher.max_seq_length == 384
    assert teacher.prompts == {"query": "", "document": ""}
    vectors = teacher.encode(["What is a leaf model?", "A small embedding model."], "query")
    assert vectors.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_onnx_runtime_teacher_matches_pytorch_and_shares_its_cache(tmp_path, tiny_teacher_dir, monkeypatch):
    monkeypatch.setenv("LEAF_HUB_CACHE", str(tmp_path / "cache"))
    from leaf_hub.teachers import OnnxRuntimeTeacher

    torch_teacher = load_teacher(str(tiny_teacher_dir))
    onnx_teacher = load_teacher(str(tiny_teacher_dir), backend="onnx")
    assert isinstance(onnx_teacher, OnnxRuntimeTeacher) and onnx_teacher.parity >= 0.9999
    assert onnx_teacher.fingerprint == torch_teacher.fingerprint
    texts = ["what is a cat", "the dog ran to the house in the city"]
    for kind in ("query", "document"):
        np.testing.assert_allclose(
            onnx_teacher.encode(texts, kind), torch_teacher.encode(texts, kind), atol=1e-4
        )
    with pytest.raises(LeafHubError, match="backend"):
        load_teacher(str(tiny_teacher_dir), backend="tensorrt")
