"""The running Space (leaf_hub.space.app.build_app on 127.0.0.1) driven through gradio_client and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from embedding_server import free_port
from space_helpers import launched_space, stop, wait_for_app

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*(copy keyword|downcasting)")

from leaf_hub.space import compare as C  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUERY = "what is a good book about the history of music"
DOCS = [
    "a history of music in the old city",
    "the red car is fast",
    "a new study of computer networks",
    "music and language: a book",
]
BENCH = {"meta": {}, "results": [], "summary": {"torch": {"documents_speedup": 3.25, "queries_speedup": 2.5}}}
EVAL = {
    "meta": {},
    "results": {"teacher": {"cisi": {"ndcg@10": 0.418}}, "leaf": {"cisi": {"ndcg@10": 0.377}}},
}


def expected_scores(teacher_dir: Path, leaf_dir: Path, query: str, docs: list[str]) -> dict[str, list[float]]:
    """The three columns straight from sentence-transformers, independent of leaf_hub."""
    teacher = SentenceTransformer(str(teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(leaf_dir), device="cpu")
    q_t, d_t = teacher.encode_query([query]), teacher.encode_document(docs)
    q_l, d_l = leaf.encode_query([query]), leaf.encode_document(docs)
    return {
        "teacher": teacher.similarity(q_t, d_t)[0].tolist(),
        "leaf": leaf.similarity(q_l, d_l)[0].tolist(),
        "asymmetric": teacher.similarity(q_l, d_t)[0].tolist(),
    }


def assert_table_matches(result: dict, expected: dict[str, list[float]], docs: list[str]) -> None:
    assert result["headers"] == C.TABLE_HEADERS
    rows = result["data"]
    assert [row[1] for row in rows] == docs
    for name, column in (("teacher", 2), ("leaf", 4), ("asymmetric", 6)):
        for row, value in zip(rows, expected[name], strict=True):
            # Shown rounded to 4 decimals: equal to the float within half a unit of the last place.
            assert abs(row[column] - value) <= 0.5e-4 + 1e-7, (name, row, value)
        assert sorted(row[column + 1] for row in rows) == list(range(1, len(docs) + 1))


@pytest.fixture(scope="module")
def reports_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reports")
    (folder / "bench_report.json").write_text(json.dumps(BENCH))
    (folder / "eval_report.json").write_text(json.dumps(EVAL))
    return folder


@pytest.fixture(scope="module")
def app_url(tiny_leaf_dir, tiny_teacher_dir, reports_dir):
    with launched_space(tiny_leaf_dir, tiny_teacher_dir, reports_dir) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def expected(tiny_teacher_dir, tiny_leaf_dir):
    return expected_scores(tiny_teacher_dir, tiny_leaf_dir, QUERY, DOCS)


def test_compare_endpoint_equals_similarity(client, expected):
    result = client.predict(QUERY, "\n".join(DOCS), api_name="/compare")
    assert_table_matches(result, expected, DOCS)
    assert result["dimensions"] == 48 and result["precision"] == "none"
    assert set(result["agreement"]) == {"leaf", "asymmetric"}
    assert result["seconds"]["teacher"] > 0 and result["seconds"]["leaf"] > 0


def test_compare_endpoint_is_documented(client):
    api = client.view_api(return_format="dict", print_info=False)
    params = [p["parameter_name"] for p in api["named_endpoints"]["/compare"]["parameters"]]
    assert params == ["query", "documents_text", "dimensions", "precision"]


def test_compare_endpoint_with_truncation_and_quantization(client, tiny_teacher_dir):
    result = client.predict(QUERY, "\n".join(DOCS), 16, "binary", api_name="/compare")
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    q = C.transform(teacher.encode_query([QUERY]), 16, "binary")
    d = C.transform(teacher.encode_document(DOCS), 16, "binary")
    assert [row[2] for row in result["data"]] == [round(v, 4) for v in teacher.similarity(q, d)[0].tolist()]
    assert result["dimensions"] == 16 and result["precision"] == "binary"


@pytest.mark.parametrize(
    ("query", "docs", "message"),
    [
        ("", "a doc", "query is empty"),
        ("q", "", "no documents"),
        (
            "q",
            "\n".join(f"d{i}" for i in range(C.MAX_DOCUMENTS + 1)),
            f"at most {C.MAX_DOCUMENTS} are compared",
        ),
        ("q" * (C.MAX_CHARS + 1), "a doc", f"at most {C.MAX_CHARS}"),
        ("q", "ok\n" + "d" * (C.MAX_CHARS + 5), "document 2 has"),
    ],
)
def test_compare_endpoint_bounds(client, query, docs, message):
    with pytest.raises(AppError, match=message):
        client.predict(query, docs, api_name="/compare")


def test_bad_precision_is_refused(client):
    with pytest.raises(AppError, match="precision must be one of"):
        client.predict(QUERY, "a doc", 0, "int4", api_name="/compare")


def test_pair_endpoint(client, tiny_teacher_dir, tiny_leaf_dir):
    s1, s2 = "the cat is in the house", "a dog is in the city"
    result = client.predict(s1, s2, 48, "none", api_name="/pair_similarity")
    got = dict((row[0], row[1]) for row in result["data"])
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    t, lf = teacher.encode([s1, s2]), leaf.encode([s1, s2])
    assert abs(got["teacher"] - float(teacher.similarity(t[:1], t[1:])[0, 0])) <= 0.5e-4 + 1e-7
    assert abs(got["leaf"] - float(leaf.similarity(lf[:1], lf[1:])[0, 0])) <= 0.5e-4 + 1e-7


def test_concurrent_users_are_all_served(app_url, expected):
    # Six requests at once from separate clients: the queue serves all, each with the right table.
    def one(_):
        return Client(app_url, verbose=False).predict(QUERY, "\n".join(DOCS), api_name="/compare")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(6)))
    for result in results:
        assert_table_matches(result, expected, DOCS)
    assert time.perf_counter() - start < 120


def test_page_and_card_facts_are_served(app_url):
    # The facts tab's markdown is part of the app config the page is built from.
    config = httpx.get(app_url.rstrip("/") + "/config", timeout=30).json()
    texts = [str(c.get("props", {}).get("value", "")) for c in config["components"]]
    facts = next(t for t in texts if "parameters" in t and "| torch |" in t)
    assert "| torch | 3.2× | 2.5× |" in facts
    evaluation = [c["props"]["value"] for c in config["components"] if c.get("type") == "dataframe"]
    assert any(v and v.get("data") == [["cisi", "ndcg@10", 0.418, 0.377, None]] for v in evaluation)
    page = httpx.get(app_url, timeout=30)
    assert page.status_code == 200 and "leaf vs teacher" in page.text.lower()


def test_build_app_from_loaded_models_without_reports(tiny_teacher_dir, tiny_leaf_dir, monkeypatch, tmp_path):
    import gradio as gr

    from leaf_hub.space.app import build_app

    # Reports are read from the leaf folder or report_dir only, never from the working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench_report.json").write_text(json.dumps(BENCH))
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    demo = build_app(leaf, teacher, leaf_name="my-leaf")
    assert isinstance(demo, gr.Blocks)
    texts = " ".join(str(getattr(b, "value", "")) for b in demo.blocks.values())
    assert "`my-leaf`" in texts and "`teacher (in memory)`" in texts
    assert "No `bench_report.json`" in texts


@pytest.mark.parametrize("entry", ["space/app.py", "leaf-hub space"])
def test_entry_points_serve_the_app(entry, tiny_leaf_dir, tiny_teacher_dir, expected):
    """`python space/app.py` (models from LEAF_MODEL / TEACHER_MODEL) and `leaf-hub space` in a process."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    if entry == "space/app.py":
        env.update(
            LEAF_MODEL=str(tiny_leaf_dir),
            TEACHER_MODEL=str(tiny_teacher_dir),
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_SERVER_PORT=str(port),
        )
        cmd = [sys.executable, str(REPO / "space" / "app.py")]
    else:
        cmd = [sys.executable, "-m", "leaf_hub", "space", "--leaf", str(tiny_leaf_dir)]
        cmd += ["--teacher", str(tiny_teacher_dir), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_app(url, proc)
        result = Client(url, verbose=False).predict(QUERY, "\n".join(DOCS), api_name="/compare")
        assert_table_matches(result, expected, DOCS)
    finally:
        stop(proc)


@pytest.mark.integration
def test_real_teacher_and_leaf(offline_models, tmp_path):
    """The real all-mpnet-base-v2 teacher with a leaf built on all-MiniLM-L6-v2 (768-d projection)."""
    from leaf_hub.leaf import build_leaf
    from leaf_hub.space.app import build_app

    teacher_id, student_id = (
        "sentence-transformers/all-mpnet-base-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    student = SentenceTransformer(student_id, device="cpu")
    leaf_dir = tmp_path / "leaf"
    build_leaf(student, teacher_dim=768, normalize=True, max_seq_length=256).save(str(leaf_dir))
    demo = build_app(str(leaf_dir), teacher_id)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        docs = ["Vaccines train the immune system.", "The stock market fell today.", "Basil keeps in water."]
        query = "how do vaccines work"
        result = Client(url, verbose=False).predict(query, "\n".join(docs), api_name="/compare")
        teacher = SentenceTransformer(teacher_id, device="cpu")
        sims = teacher.similarity(teacher.encode_query([query]), teacher.encode_document(docs))[0].tolist()
        assert [abs(row[2] - s) <= 0.5e-4 + 1e-7 for row, s in zip(result["data"], sims, strict=True)] == [
            True
        ] * 3
        # The real teacher ranks the vaccine document first.
        assert result["data"][0][3] == 1
    finally:
        demo.close()


def test_leaf_hub_space_honours_gradio_server_name_and_port(tiny_leaf_dir, tiny_teacher_dir, expected):
    """Without --host / --port, `leaf-hub space` listens where GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    cmd = [
        sys.executable,
        "-m",
        "leaf_hub",
        "space",
        "--leaf",
        str(tiny_leaf_dir),
        "--teacher",
        str(tiny_teacher_dir),
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_app(url, proc)
        result = Client(url, verbose=False).predict(QUERY, "\n".join(DOCS), api_name="/compare")
        assert_table_matches(result, expected, DOCS)
    finally:
        stop(proc)


def test_the_page_names_models_without_local_paths_and_explains_the_asymmetric_scale(
    app_url, tiny_leaf_dir, tiny_teacher_dir
):
    config = httpx.get(app_url.rstrip("/") + "/config", timeout=30).text
    assert str(tiny_leaf_dir) not in config and str(tiny_teacher_dir) not in config
    assert f"{tiny_leaf_dir.name} (local folder)" in config
    assert "Asymmetric cosines (leaf query against teacher documents) sit on another scale" in config


def test_both_models_are_warmed_up_before_the_first_visitor(tiny_teacher_dir, tiny_leaf_dir, caplog):
    """The first visitor's leaf/teacher timing must not include either model's first-call costs."""
    import logging

    from leaf_hub.space.app import build_app

    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    calls: list[str] = []
    for name, model in (("teacher", teacher), ("leaf", leaf)):
        for method in ("encode_query", "encode_document"):
            original = getattr(model, method)

            def record(*args, _original=original, _tag=f"{name}.{method}", **kwargs):
                calls.append(_tag)
                return _original(*args, **kwargs)

            setattr(model, method, record)
    with caplog.at_level(logging.INFO, logger="leaf_hub.space.app"):
        build_app(leaf, teacher)
    assert {
        "teacher.encode_query",
        "teacher.encode_document",
        "leaf.encode_query",
        "leaf.encode_document",
    } <= set(calls)
    assert "warmed up: teacher" in caplog.text
