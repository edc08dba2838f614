"""What the Space serves on 2 vCPU (the Hub's free CPU tier): latency under concurrent visitors, by queue setting.

The app (:func:`leaf_hub.space.app.build_app`, the real all-mpnet-base-v2 teacher and a MiniLM leaf) runs in
its own process, launched as a Space launches it, with a given gradio ``concurrency_limit`` (requests
computed at once), queue size and PyTorch intra-op threads. Simulated visitors (``gradio_client`` in
threads of this process) call ``/compare``:

- ``short``: N visitors at once, each sending R short requests one after the other (a query and five
  one-line documents, like the ready examples): p50 / p95 / max latency per request, requests per second,
  requests the queue turned away;
- ``mixed``: one visitor sends the largest input the Space allows (20 documents of 2,000 characters) and,
  half a second later, N visitors send short requests: does one heavy request stall everyone else?

Each configuration runs with the CPU lock held (``--lock``, released between configurations, so other
heavy work waits rather than skewing the timings); a warm-up request precedes the timed ones. The visitors'
own HTTP work runs on the same two cores as the server (on the Hub they are remote): a small, constant
overhead that makes the figures slightly pessimistic. Results: ``bench/results/space_load.{json,md}``.

    python bench/space_load.py --lock /tmp/leafhub-cpu.lock
    python bench/space_load.py --lock /tmp/leafhub-cpu.lock --configs 2:1:20,2:1:64 --clients 20,40 \
        --output bench/results/space_load_queue.json     # the queue size, beyond 20 visitors
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, STUDENT, TEACHER, locked, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / "bench" / ".cache"

_SERVER = """
import sys
import torch
torch.set_num_threads(int(sys.argv[5]))
from leaf_hub.space.app import build_app, launch_kwargs
demo = build_app(sys.argv[1], sys.argv[2], concurrency_limit=int(sys.argv[3]), max_queue=int(sys.argv[4]))
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[6]), quiet=True, **launch_kwargs())
"""


def _leaf(path: str | None) -> str:
    """The leaf to serve: the given folder, else an untrained MiniLM leaf (timing does not depend on training)."""
    if path:
        return path
    folder = CACHE / "space_load_leaf"
    if not (folder / "modules.json").is_file():
        from sentence_transformers import SentenceTransformer

        from leaf_hub.leaf import build_leaf

        student = SentenceTransformer(STUDENT, device="cpu")
        build_leaf(student, teacher_dim=768, normalize=True, max_seq_length=384).save(str(folder))
    return str(folder)


def _requests():
    from leaf_hub.space.compare import EXAMPLES, MAX_CHARS, MAX_DOCUMENTS

    query, docs = EXAMPLES[0]
    short = (query, docs)
    words = " ".join(d for _, ds in EXAMPLES for d in ds.splitlines()).split()
    text, i = [], 0
    while len(" ".join(text)) < MAX_CHARS - 20:
        text.append(words[i % len(words)])
        i += 1
    long_doc = " ".join(text)[:MAX_CHARS]
    long = (query, "\n".join(f"{n} {long_doc}"[:MAX_CHARS] for n in range(MAX_DOCUMENTS)))
    return short, long


@contextlib.contextmanager
def _server(leaf: str, teacher: str, limit: int, queue: int, threads: int):
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from embedding_server import free_port

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    args = [leaf, teacher, str(limit), str(queue), str(threads), str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the app exited: {proc.stdout.read()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            if time.time() > deadline:
                raise SystemExit("the app did not start within 300 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _visitor(url: str, request, count: int, out: list, start: threading.Event, delay: float = 0.0) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    start.wait()
    time.sleep(delay)
    for _ in range(count):
        began = time.perf_counter()
        try:
            client.predict(*request, api_name="/compare")
            out.append(("ok", time.perf_counter() - began))
        except Exception as exc:  # noqa: BLE001 - a refused or failed request is a measured outcome
            out.append(("rejected" if "queue" in str(exc).lower() else "error", time.perf_counter() - began))


def _run(url: str, short, long, clients: int, repeats: int, mixed: bool) -> dict:
    start = threading.Event()
    shorts: list = []
    longs: list = []
    threads = [
        threading.Thread(target=_visitor, args=(url, short, repeats, shorts, start, 0.5 if mixed else 0.0))
        for _ in range(clients)
    ]
    if mixed:
        threads.append(threading.Thread(target=_visitor, args=(url, long, 1, longs, start)))
    for t in threads:
        t.start()
    time.sleep(1.0)  # clients connected
    began = time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ok = sorted(s for status, s in shorts if status == "ok")
    row = {
        "scenario": "mixed" if mixed else "short",
        "clients": clients,
        "requests": len(shorts),
        "ok": len(ok),
        "rejected": sum(1 for status, _ in shorts if status == "rejected"),
        "errors": sum(1 for status, _ in shorts if status == "error"),
        "p50_s": round(statistics.median(ok), 3) if ok else None,
        "p95_s": round(ok[min(len(ok) - 1, int(round(0.95 * (len(ok) - 1))))], 3) if ok else None,
        "max_s": round(ok[-1], 3) if ok else None,
        "throughput_rps": round(len(ok) / wall, 2),
        "wall_s": round(wall, 1),
    }
    if mixed:
        row["long_s"] = round(longs[0][1], 1) if longs and longs[0][0] == "ok" else None
    return row


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def to_markdown(report: dict) -> str:
    lines = [
        "# The Space under load (2 vCPU)",
        "",
        f"{report['meta']['cpu']}, {report['meta']['cores']} cores; teacher {report['meta']['teacher']}, "
        f"leaf {report['meta']['leaf_name']}; {report['meta']['date']}. Short request: a query and 5 one-line "
        "documents; long: 20 documents of 2,000 characters (the largest allowed).",
        "",
        "| concurrency limit | torch threads | queue | scenario | visitors x requests | ok | turned away | "
        "p50 s | p95 s | max s | req/s | long request s |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['concurrency_limit']} | {r['torch_threads']} | {r['max_queue']} | {r['scenario']} | "
            f"{r['clients']} x {r['requests'] // max(r['clients'], 1)} | {r['ok']} | {r['rejected']} | "
            f"{r['p50_s']} | {r['p95_s']} | {r['max_s']} | {r['throughput_rps']} | {r.get('long_s', '')} |"
        )
    return "\n".join(lines) + "\n"


def _config(text: str) -> tuple[int, int, int]:
    limit, threads, queue = (int(v) for v in text.split(":"))
    return limit, threads, queue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaf", default=None, help="leaf folder (default: an untrained MiniLM leaf)")
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument(
        "--configs",
        default="1:2:64,2:1:64,2:2:64,3:1:64",
        help="comma-separated LIMIT:THREADS:QUEUE (gradio concurrency limit, torch threads, queue size)",
    )
    parser.add_argument("--clients", default="1,4,8,20", help="visitors at once, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="short requests per visitor")
    parser.add_argument("--mixed-clients", type=int, default=6, help="short visitors beside one long request")
    parser.add_argument("--lock", default=None, help="flock this file around each configuration's run")
    parser.add_argument("--output", default=str(RESULTS / "space_load.json"))
    args = parser.parse_args()

    leaf = _leaf(args.leaf)
    short, long = _requests()
    results = []
    for limit, threads, queue in (_config(c) for c in args.configs.split(",")):
        with locked(args.lock), _server(leaf, args.teacher, limit, queue, threads) as url:
            _run(url, short, long, 1, 2, mixed=False)  # warm-up: both models, both paths
            for clients in (int(c) for c in args.clients.split(",")):
                row = _run(url, short, long, clients, args.repeats, mixed=False)
                results.append(
                    {"concurrency_limit": limit, "torch_threads": threads, "max_queue": queue, **row}
                )
                print(json.dumps(results[-1]), flush=True)
            row = _run(url, short, long, args.mixed_clients, args.repeats, mixed=True)
            results.append({"concurrency_limit": limit, "torch_threads": threads, "max_queue": queue, **row})
            print(json.dumps(results[-1]), flush=True)
    report = {
        "meta": {
            "leaf": leaf if not Path(leaf).is_relative_to(ROOT) else str(Path(leaf).relative_to(ROOT)),
            "leaf_name": Path(leaf).name,
            "teacher": args.teacher,
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "repeats": args.repeats,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        },
        "results": results,
    }
    out = Path(args.output)
    write_results(out, report)
    out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
