"""Evaluation sets by name from the Hub: ``nanobeir:NAME``, ``hf:ORG/NAME`` (BEIR layout), ``stsb``, and an
unmodified mteb task through the mteb adapter.

The datasets are laid out as on the Hub (parquet files, configs declared in the README's YAML or inferred
from file names) and served by the local Hub server (tests/hub_server.py); ``leaf-hub evaluate`` runs in a
fresh process pointed at it with ``HF_ENDPOINT``, so ``datasets`` resolves, downloads and caches them as it
does from huggingface.co. Each report must equal the one computed from the same rows in local files.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from eval_helpers import synthetic_beir, write_beir, write_sts_plain

from leaf_hub.cli import main
from leaf_hub.evaluation.retrieval import NANOBEIR_ID
from leaf_hub.evaluation.sts import STSB_HUB_ID


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _beir_rows(folder) -> tuple[list[dict], list[dict], list[dict]]:
    """A local BEIR folder's corpus, queries and qrels as the rows of Hub tables."""
    corpus = [
        {"_id": r["_id"], "title": r["title"], "text": r["text"]} for r in _jsonl(folder / "corpus.jsonl")
    ]
    queries = _jsonl(folder / "queries.jsonl")
    qrels = [line.split("\t") for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    return corpus, queries, [{"query-id": q, "corpus-id": d, "score": int(s)} for q, d, s in qrels]


def _hub_env(url: str, tmp_path) -> dict[str, str]:
    """A child process pointed at the local Hub, online, with empty caches (everything comes from it)."""
    return {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "LEAF_HUB_CACHE": str(tmp_path / "cache"),
        "MTEB_CACHE": str(tmp_path / "mteb-cache"),
    }


def _card(configs: dict[str, dict[str, str]]) -> bytes:
    """A dataset card whose YAML declares configs -> {split: data file pattern}, as the Hub's do."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    return ("\n".join(lines) + "\n---\n\n# test dataset\n").encode()


@pytest.fixture
def leaf_copy(tiny_leaf_dir, tmp_path):
    """A private copy of the tiny leaf (evaluate writes eval_report.json into it)."""
    return shutil.copytree(tiny_leaf_dir, tmp_path / "leaf")


@pytest.fixture
def collections(tmp_path):
    """Two BEIR collections (``SciFact`` and a decoy ``NQ``) and STS pairs, as local files."""
    scifact = synthetic_beir(tmp_path / "local" / "NanoSciFact", seed=1)
    decoy = synthetic_beir(tmp_path / "local" / "NanoNQ", n_docs=30, seed=2)
    sts = write_sts_plain(tmp_path / "local" / "stsb-test.tsv", n=40, seed=3)
    return {"scifact": scifact, "decoy": decoy, "sts": sts}


@pytest.fixture
def hub_datasets(hub, collections, tmp_path):
    """NanoBEIR-en, a BEIR dataset in mteb's layout and STS-B, served by the local Hub."""
    # NanoBEIR-en: configs corpus / queries / qrels, one split per dataset (NanoSciFact, NanoNQ, ...);
    # its qrels carry no score column (every judgment is relevant).
    files, configs = {}, {"corpus": {}, "queries": {}, "qrels": {}}
    for split, folder in (("NanoSciFact", collections["scifact"]), ("NanoNQ", collections["decoy"])):
        corpus, queries, qrels = _beir_rows(folder)
        binary = [{"query-id": r["query-id"], "corpus-id": r["corpus-id"]} for r in qrels]
        for config, table in (("corpus", corpus), ("queries", queries), ("qrels", binary)):
            files[f"{config}/{split}-00000-of-00001.parquet"] = _parquet(table)
            configs[config][split] = f"{config}/{split}-*"
    files["README.md"] = _card(configs)
    hub.seed(NANOBEIR_ID, files, repo_type="dataset")

    # mteb's BEIR layout: configs corpus (split corpus), queries (split queries), default (split test).
    corpus, queries, qrels = _beir_rows(collections["scifact"])
    hub.seed(
        "mteb/scifact-like",
        {
            "corpus/corpus-00000-of-00001.parquet": _parquet(corpus),
            "queries/queries-00000-of-00001.parquet": _parquet(queries),
            "data/test-00000-of-00001.parquet": _parquet(qrels),
            "README.md": _card(
                {
                    "corpus": {"corpus": "corpus/corpus-*"},
                    "queries": {"queries": "queries/queries-*"},
                    "default": {"test": "data/test-*"},
                }
            ),
        },
        repo_type="dataset",
    )

    # STS-B as sentence-transformers/stsb: splits inferred from the file names, scores in 0..1.
    pairs = [line.split("\t") for line in collections["sts"].read_text().splitlines()[1:]]
    test = [{"sentence1": a, "sentence2": b, "score": float(s)} for s, a, b in pairs]
    hub.seed(
        STSB_HUB_ID,
        {
            "data/train-00000-of-00001.parquet": _parquet(test[::-1][:10]),
            "data/test-00000-of-00001.parquet": _parquet(test),
        },
        repo_type="dataset",
    )
    return hub


def test_nanobeir_hub_beir_and_stsb_by_name_equal_local_files(
    hub_datasets, collections, tmp_path, leaf_copy, tiny_teacher_dir, monkeypatch
):
    env = _hub_env(hub_datasets.url, tmp_path)
    hub_report = tmp_path / "hub" / "report.json"
    cmd = [sys.executable, "-m", "leaf_hub", "evaluate", "--leaf", str(leaf_copy)]
    cmd += ["--teacher", str(tiny_teacher_dir), "--output", str(hub_report), "--no-plots", "--dims", "16"]
    cmd += ["--retrieval", "nanobeir:scifact", "--retrieval", "hf:mteb/scifact-like", "--sts", "stsb"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    downloaded = {path for _, path in hub_datasets.requests if "/resolve/" in path}
    for repo in (NANOBEIR_ID, "mteb/scifact-like", STSB_HUB_ID):
        assert any(f"/datasets/{repo}/resolve/" in p and p.endswith(".parquet") for p in downloaded), repo

    # The same rows from local files, under the same task names.
    corpus, queries, qrels = _beir_rows(collections["scifact"])
    binary = write_beir(
        tmp_path / "local" / "binary", corpus, queries, [(r["query-id"], r["corpus-id"], 1) for r in qrels]
    )
    local_report = tmp_path / "local" / "report.json"
    monkeypatch.setenv("LEAF_HUB_CACHE", str(tmp_path / "cache"))
    args = ["evaluate", "--leaf", str(leaf_copy), "--teacher", str(tiny_teacher_dir), "--no-plots"]
    args += ["--output", str(local_report), "--dims", "16", "--sts", f"stsb-test={collections['sts']}"]
    args += ["--retrieval", f"NanoSciFact={binary}", "--retrieval", f"scifact-like={collections['scifact']}"]
    assert main(args) == 0

    hub_results = json.loads(hub_report.read_text())
    local_results = json.loads(local_report.read_text())
    assert hub_results["results"] == local_results["results"]
    assert hub_results["mrl_quant"] == local_results["mrl_quant"]
    tasks = set(hub_results["results"]["teacher"])
    assert {"NanoSciFact", "scifact-like", "stsb-test"} <= tasks
    sources = {name: d["source"] for name, d in hub_results["meta"]["datasets"].items()}
    assert sources["NanoSciFact"] == "nanobeir:scifact" and sources["scifact-like"] == "hf:mteb/scifact-like"
    # Graded judgments survive the Hub round trip (mteb layout), binary ones are NanoBEIR's.
    graded, flat = (hub_results["results"]["teacher"][t]["ndcg@10"] for t in ("scifact-like", "NanoSciFact"))
    assert graded != flat


def test_unknown_hub_names_are_clear_errors(hub_datasets, tmp_path, leaf_copy, tiny_teacher_dir):
    env = _hub_env(hub_datasets.url, tmp_path)
    base = [sys.executable, "-m", "leaf_hub", "evaluate", "--leaf", str(leaf_copy)]
    base += ["--teacher", str(tiny_teacher_dir), "--output", str(tmp_path / "r.json"), "--no-plots"]
    for extra, message in (
        (["--retrieval", "nanobeir:notaset"], "is not a NanoBEIR dataset"),
        (["--retrieval", "hf:mteb/no-such-dataset"], "mteb/no-such-dataset"),
        (["--sts", "stsb:dev"], "split 'dev'"),
    ):
        proc = subprocess.run(base + extra, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, (
            extra,
            proc.stderr[-2000:],
        )


MTEB_SCRIPT = """
import json, sys
import mteb
from leaf_hub.evaluation.mteb_adapter import mteb_encoder

pair = mteb_encoder(sys.argv[1], sys.argv[2])  # leaf queries, teacher documents
tasks = mteb.get_tasks(tasks=["NanoSciFactRetrieval"])
result = mteb.evaluate(pair, tasks, cache=None, show_progress_bar=False)
print(json.dumps(result.task_results[0].scores))
"""


def test_an_unmodified_mteb_task_loads_from_the_hub_and_agrees(
    hub, collections, tmp_path, leaf_copy, tiny_teacher_dir
):
    """mteb's own NanoSciFactRetrieval task (its Hub dataset at the revision mteb pins) through the adapter."""
    mteb = pytest.importorskip("mteb")
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from leaf_hub.evaluation.retrieval import evaluate_embeddings, load_beir_folder

    dataset = mteb.get_tasks(tasks=["NanoSciFactRetrieval"])[0].metadata.dataset
    folder = collections["scifact"]
    corpus, queries, qrels = _beir_rows(folder)
    # mteb's own datasets name the id column "id".
    corpus = [{"id": r["_id"], "text": r["text"], "title": r["title"]} for r in corpus]
    queries = [{"id": r["_id"], "text": r["text"]} for r in queries]
    hub.seed(
        dataset["path"],
        {
            "corpus/train-00000-of-00001.parquet": _parquet(corpus),
            "queries/train-00000-of-00001.parquet": _parquet(queries),
            "qrels/train-00000-of-00001.parquet": _parquet(qrels),
            "README.md": _card({c: {"train": f"{c}/train-*"} for c in ("corpus", "queries", "qrels")}),
        },
        repo_type="dataset",
        oid=dataset["revision"],
    )
    proc = subprocess.run(
        [sys.executable, "-c", MTEB_SCRIPT, str(leaf_copy), str(tiny_teacher_dir)],
        env=_hub_env(hub.url, tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any(f"/datasets/{dataset['path']}/resolve/{dataset['revision']}/" in p for _, p in hub.requests)

    ds = load_beir_folder(folder)
    leaf = SentenceTransformer(str(leaf_copy), device="cpu")
    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    ours = evaluate_embeddings(ds, leaf.encode_query(ds.queries), teacher.encode_document(ds.docs))
    assert scores["train"][0]["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=1e-4)
    assert np.isfinite(scores["train"][0]["recall_at_100"])
