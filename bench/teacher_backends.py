"""Teacher-cache throughput: the teacher under ONNX Runtime against PyTorch, same texts, same run.

On CPU the teacher is the slowest part of distillation; this measures what ``--teacher-backend onnx`` buys.
Texts are the mixed-length training texts of ``../shared/data/train``, embedded in length-sorted batches
as the teacher cache does; the two backends alternate over ``--rounds`` so machine noise hits both.

    python bench/teacher_backends.py --texts 256 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="sentence-transformers/all-mpnet-base-v2")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "teacher_backends.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from train_throughput import read_texts

    from leaf_hub.teachers import load_teacher

    texts, kinds = read_texts(args.texts, seed=1)
    teachers = {"torch": load_teacher(args.teacher), "onnx": load_teacher(args.teacher, backend="onnx")}
    order = np.argsort(teachers["torch"].token_lengths(texts), kind="stable")
    texts = [texts[i] for i in order]
    times: dict[str, list[float]] = {name: [] for name in teachers}
    outputs = {}
    for _ in range(args.rounds):
        for name, teacher in teachers.items():
            start = time.perf_counter()
            outputs[name] = np.concatenate(
                [teacher.encode(texts[i : i + 64], "document") for i in range(0, len(texts), 64)]
            )
            times[name].append(time.perf_counter() - start)
    cos = (outputs["torch"] * outputs["onnx"]).sum(1)
    result = {
        "texts": len(texts),
        "texts_per_s": {name: len(texts) / min(t) for name, t in times.items()},
        "seconds": times,
        "min_cosine_onnx_vs_torch": float(cos.min()),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    result["onnx_speedup"] = result["texts_per_s"]["onnx"] / result["texts_per_s"]["torch"]
    write_results(args.output, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
