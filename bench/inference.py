"""Leaf vs teacher inference speed (``leaf-hub bench``) on short search queries, CISI queries and documents.

The paper's Table 8 protocol, run through :func:`leaf_hub.evaluation.benchmark.benchmark` at 1 and 2 threads, ONNX
Runtime fp32 and int8 (``--backends torch`` for PyTorch, ``--interleave batch`` for the protocol's old
call-by-call turns, ``--suffix`` to keep such a run beside the default one). The texts come from
``../shared`` (the package itself only carries its built-in corpus), passed to ``benchmark`` explicitly:

- ``search``: real web-search queries (NQ, TREC Million Query, TriviaQA, ... from ``../shared`` training
  texts; 12 tokens on average, what a search box sends) and the CISI documents (title + text);
- ``cisi-queries``: the CISI queries, information needs written as sentences or paragraphs (98 tokens on
  average, against 155 for the CISI documents), timed alone.

Both models at the same max_seq_length (384); each batch size times one pool of 48 texts (full batches at
every size), cut into batches the way ``encode`` forms them (sorted by length; ``--batching arrival`` for
batches in arrival order, as an online server sees them). Writes
``bench/results/inference_{search,cisi-queries}_{N}t.{json,md,png}``.

    python bench/inference.py --leaf bench/.cache/cosine_vs_time_leaf
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED_TRAIN, TEACHER  # noqa: E402

CISI = ROOT.parent / "shared" / "data" / "eval" / "cisi"


def search_queries(n: int = 1000, seed: int = 0) -> list[str]:
    """``n`` real search queries (every ``q:*`` source of the shared training texts), sampled with ``seed``."""
    with gzip.open(SHARED_TRAIN, "rt") as f:
        rows = [json.loads(line) for line in f]
    queries = [r["text"] for r in rows if r["source"].startswith("q:")]
    return random.Random(seed).sample(queries, n)


def main() -> None:
    from leaf_hub.evaluation.benchmark import BenchConfig, benchmark, read_texts
    from leaf_hub.evaluation.config import BATCHING, INTERLEAVE
    from leaf_hub.models import BACKENDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaf", default=str(ROOT / "bench" / ".cache" / "cosine_vs_time_leaf"))
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool", type=int, default=48, help="texts timed at every batch size")
    parser.add_argument(
        "--batch-sizes", default="1,2,4,8,16,24", help="comma-separated (the paper's Table 8 sizes)"
    )
    parser.add_argument("--interleave", choices=INTERLEAVE, default="repeat")
    parser.add_argument("--batching", choices=BATCHING, default="sorted")
    parser.add_argument("--sets", default="search,cisi-queries", help="comma-separated: search, cisi-queries")
    parser.add_argument(
        "--backends",
        default="onnx,onnx-int8",
        help="comma-separated, from torch, onnx, onnx-int8 (cisi-queries runs the first one only)",
    )
    parser.add_argument("--kinds", default="queries,documents", help="comma-separated: queries, documents")
    parser.add_argument("--suffix", default="", help="appended to the result files' names")
    parser.add_argument("--output-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    unknown = [s for s in args.sets.split(",") if s not in ("search", "cisi-queries")]
    if unknown:
        parser.error(f"unknown --sets {unknown}; choose from search, cisi-queries")
    backends = args.backends.split(",")
    wanted_kinds = args.kinds.split(",")
    if [k for k in wanted_kinds if k not in ("queries", "documents")]:
        parser.error(f"unknown --kinds {args.kinds!r}; choose from queries, documents")
    if [b for b in backends if b not in BACKENDS] or not backends:
        parser.error(f"unknown --backends {args.backends!r}; choose from {', '.join(BACKENDS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    documents = read_texts(CISI / "corpus.jsonl")
    sets = {
        "search": (search_queries(), ["queries", "documents"]),
        "cisi-queries": (read_texts(CISI / "queries.jsonl"), ["queries"]),
    }
    sources = {
        "search": {
            "queries": "search queries (NQ, TREC MQ, TriviaQA, ... in ../shared)",
            "documents": "CISI",
        },
        "cisi-queries": {"queries": "CISI queries", "documents": "-"},
    }
    for threads in [int(t) for t in args.threads.split(",")]:
        for name, (queries, kinds) in sets.items():
            kinds = [k for k in kinds if k in wanted_kinds]
            if name not in args.sets.split(",") or not kinds:
                continue
            output = Path(args.output_dir) / f"inference_{name}_{threads}t{args.suffix}.json"
            config = BenchConfig(
                args.leaf,
                args.teacher,
                backends=backends if name == "search" else backends[:1],
                batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
                repeats=args.repeats,
                threads=threads,
                sources=sources[name],
                pool_size=args.pool,
                kinds=kinds,
                interleave=args.interleave,
                batching=args.batching,
                output=output,
            )
            report = benchmark(config, queries=queries, documents=documents)
            for backend, s in report.summary.items():
                print(
                    f"{name}, {threads} thread(s), {backend}: queries x{s.queries_speedup:.2f}"
                    + (f", documents x{s.documents_speedup:.2f}" if s.documents_speedup else ""),
                    file=sys.stderr,
                    flush=True,
                )
            for kind, d in report.deployment.items():
                print(
                    f"{name}, {threads} thread(s), int8 leaf vs fp32 teacher, {kind}: "
                    f"x{d.leaf_int8_vs_teacher_fp32:.2f} (int8 leaf to fp32 leaf: cosine {d.leaf_int8_cosine:.4f})",
                    file=sys.stderr,
                    flush=True,
                )
            print("wrote " + ", ".join(str(p) for p in report.files), file=sys.stderr)


if __name__ == "__main__":
    main()
