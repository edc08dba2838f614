"""Small evaluation collections for the evaluate tests: BEIR folders and STS files written on the fly."""

from __future__ import annotations

import json
import random
from pathlib import Path

# Words the tiny test tokenizer knows, so tiny models see real tokens (see tiny_models._WORDS).
WORDS = (
    "cat dog house car tree water fire city music science history language computer data network "
    "information library book paper study result method system user text word sentence vector space "
    "red blue green big small fast slow good bad new old first last one two three many"
).split()


def write_beir(
    folder: Path,
    corpus: list[dict],
    queries: list[dict],
    qrels: list[tuple[str, str, int]] | None,
    split: str = "test",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    if qrels is not None:
        (folder / "qrels").mkdir(exist_ok=True)
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def synthetic_beir(folder: Path, n_docs: int = 60, n_queries: int = 12, seed: int = 0) -> Path:
    """A random collection from the tiny vocabulary: each query's relevant documents share its words.

    Graded judgments 1-2, one query without judgments.
    """
    rng = random.Random(seed)
    corpus = [
        {"_id": f"d{i}", "title": " ".join(rng.sample(WORDS, 2)), "text": " ".join(rng.choices(WORDS, k=12))}
        for i in range(n_docs)
    ]
    queries, qrels = [], []
    for q in range(n_queries):
        words = rng.sample(WORDS, 3)
        queries.append({"_id": f"q{q}", "text": "what about " + " ".join(words)})
        if q == n_queries - 1:
            continue  # unjudged
        for did in rng.sample(range(n_docs), 3):
            corpus[did]["text"] += " " + " ".join(words)
            qrels.append((f"q{q}", f"d{did}", rng.choice([1, 2])))
    return write_beir(folder, corpus, queries, qrels)


def write_sts_plain(path: Path, n: int = 40, seed: int = 0, header: bool = True) -> Path:
    rng = random.Random(seed)
    lines = ["score\tsentence1\tsentence2"] if header else []
    for _ in range(n):
        a = rng.sample(WORDS, 5)
        overlap = rng.randint(0, 5)
        b = a[:overlap] + rng.sample(WORDS, 5 - overlap)
        lines.append(f"{overlap / 5:.2f}\t{' '.join(a)}\t{' '.join(b)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def cisi_subset(cisi: Path, folder: Path, n_queries: int = 20, n_extra_docs: int = 120) -> Path:
    """The first ``n_queries`` judged CISI queries, their relevant documents and ``n_extra_docs`` others."""
    corpus = [json.loads(line) for line in (cisi / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries = [json.loads(line) for line in (cisi / "queries.jsonl").read_text().splitlines() if line.strip()]
    rows = [line.split("\t") for line in (cisi / "qrels" / "test.tsv").read_text().splitlines()[1:] if line]
    judged = list(dict.fromkeys(r[0] for r in rows))[:n_queries]
    qrels = [(q, d, int(s)) for q, d, s in rows if q in judged]
    keep = {d for _, d, _ in qrels} | {r["_id"] for r in corpus[:n_extra_docs]}
    return write_beir(
        folder,
        [r for r in corpus if r["_id"] in keep],
        [r for r in queries if r["_id"] in judged],
        qrels,
    )
