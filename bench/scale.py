"""Scale benchmark (issue 17): distillation's data path at 100k, 1M and 6.4M texts, against today's in-memory path.

A synthetic corpus with the paper's mix and length profile (3M web documents and 0.9M news articles of up
to ~700 words, so a quarter run past the leaf's 512 tokens; 2M queries around 12 tokens; 479k Vocabulary
rows; 30k BERT tokens) and a stand-in teacher that costs nothing (a deterministic function of the text to a
1024-d unit vector, so the cache holds what mxbai-embed-large-v1's would: 2 KB per text in float16). The
student is a small BERT (2 layers, 128 wide) with all-MiniLM-L6-v2's tokenizer, so token ids, lengths and
storage are the real ones while a training step costs tens of milliseconds: what is measured is the data
path, which a slow model would hide.

Every phase runs in a fresh process, so each peak RSS is that phase's own:

* ``ingest``, ``cache``, ``tokenize`` -- the out-of-core preparation of one size (wall time, peak RSS);
* ``train`` -- ``leaf_hub.distill`` on the prepared cache folder: time from process start to the first
  training step (models, stores opened and verified, warm start, step-0 validation; the moments the stores
  were ready and the warm start done are recorded too), training steps/s
  over a fixed number of steps, then the input pipeline alone on one core (``TrainData.batch`` over
  length-grouped batches of 32), and the peak RSS of the whole process;
* ``legacy`` -- today's in-memory path on the same texts and cache (texts as a list, the cache loaded
  into one float32 array, token ids as Python lists, the old per-row collation), the baseline; it is
  stopped when it passes ``--legacy-limit-gb`` of RSS and reported as such.

Peak RSS is ``ru_maxrss``; ``anon`` is the sampled peak of anonymous memory (RSS less the pages of mapped
files, which the kernel reclaims at will). Disk is what each size's cache folder holds.

    python bench/scale.py corpus --root /work/scale                        # 6.41M rows, one parquet file
    python bench/scale.py prepare --root /work/scale --sizes 100k,1M,6.4M  # ingest, cache, tokenize (niced)
    python bench/scale.py measure --root /work/scale --sizes 100k,1M,6.4M --legacy 100k,1M --lock /tmp/leafhub-cpu.lock

(``all`` is ``prepare`` then ``measure``; ``measure`` also runs ``open`` and ``memory``, the stores alone.)

Results: ``bench/results/scale.json`` (``--out``) and a table on stdout.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

START = time.time()  # the process start, before the heavy imports: time to first step counts from here

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import locked  # noqa: E402

MIX = {  # the paper's rows (arXiv 2509.12539): name -> (rows, kind, words: median, spread, cap)
    "fineweb": (3_000_000, "document", 330, 0.7, 700),
    "ccnews": (900_000, "document", 350, 0.6, 700),
    "queries": (2_000_000, "query", 9, 0.4, 40),
    "vocabulary": (479_000, "document", 4, 0.5, 12),
    "bert": (30_000, "document", 1, 0.0, 1),
}
PAPER_ROWS = sum(v[0] for v in MIX.values())


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def size_name(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


# --------------------------------------------------------------------------------------------------
# Measuring.
# --------------------------------------------------------------------------------------------------


class Memory:
    """Samples this process's RSS and anonymous RSS; optionally stops the process past a limit."""

    def __init__(self, limit_gb: float | None = None, on_limit=None):
        self.peak_rss = self.peak_anon = 0
        self.limit = limit_gb * 2**30 if limit_gb else None
        self.on_limit = on_limit
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    fields[key] = int(value.split()[0]) * 1024
        return fields.get("VmRSS", 0), fields.get("RssAnon", 0)

    def _run(self) -> None:
        while True:
            rss, anon = self._read()
            self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
            if self.limit and rss > self.limit and self.on_limit:
                self.on_limit(rss)
            time.sleep(0.02)

    def report(self) -> dict:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {
            "peak_rss_gb": round(max(maxrss, self.peak_rss) / 2**30, 3),
            "peak_anon_gb": round(self.peak_anon / 2**30, 3),
        }


def emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def du(path: Path) -> float:
    return (
        sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**30
        if Path(path).exists()
        else 0.0
    )


# --------------------------------------------------------------------------------------------------
# The corpus, the stand-in teacher, the student.
# --------------------------------------------------------------------------------------------------


def corpus_path(root: Path) -> Path:
    return root / "corpus.parquet"


def make_corpus(root: Path, rows: int, seed: int = 0) -> None:
    """Rows in the paper's proportions, shuffled a chunk at a time: every prefix has the same mix."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from leaf_hub.data.generated import bert_tokens, builtin_words

    rng = np.random.default_rng(seed)
    words = np.array(builtin_words(), dtype=object)
    rng.shuffle(words)
    zipf = 1.0 / (np.arange(len(words)) + 10.0)  # common words often, rare words rarely
    zipf /= zipf.sum()
    tokens = np.array(
        bert_tokens(AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")), dtype=object
    )
    names = list(MIX)
    probs = np.array([MIX[n][0] for n in names], dtype=float) / PAPER_ROWS
    schema = pa.schema([("text", pa.string()), ("type", pa.string())])
    tmp = corpus_path(root).with_suffix(".tmp")
    done = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        while done < rows:
            n = min(65_536, rows - done)
            which = rng.choice(len(names), size=n, p=probs)
            lengths = np.ones(n, dtype=np.int64)
            for k, name in enumerate(names):
                _, _, median, spread, cap = MIX[name]
                sel = which == k
                if spread:
                    lengths[sel] = np.clip(rng.lognormal(np.log(median), spread, size=int(sel.sum())), 1, cap)
            stream = words[rng.choice(len(words), size=int(lengths.sum()), p=zipf)]
            ends = np.cumsum(lengths)
            texts = [
                str(tokens[rng.integers(len(tokens))])
                if names[w] == "bert"
                else " ".join(stream[e - length : e])
                for w, length, e in zip(which.tolist(), lengths.tolist(), ends.tolist(), strict=True)
            ]
            kinds = [MIX[names[w]][1] for w in which.tolist()]
            writer.write_table(pa.table({"text": texts, "type": kinds}, schema=schema))
            done += n
            print(f"corpus: {done:,} of {rows:,} rows", file=sys.stderr, flush=True)
    tmp.rename(corpus_path(root))


class StandInTeacher:
    """Text -> a 1024-d unit vector, deterministic and nearly free: the shape of mxbai-embed-large-v1's cache."""

    name = "stand-in-1024"
    fingerprint = "stand-in:blake2b-sin-1024:v1"
    dimension = 1024
    normalized = True
    prompts = {"query": "Represent this sentence for searching relevant passages: ", "document": ""}
    max_seq_length = 512
    batch_size = 256

    _freq = np.random.default_rng(1024).uniform(0.5, 50.0, size=1024)

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        digest = b"".join(hashlib.blake2b((kind + t).encode(), digest_size=8).digest() for t in texts)
        h = np.frombuffer(digest, dtype=np.uint64)
        a = (h % np.uint64(1_000_003)).astype(np.float64) / 1_000_003
        b = ((h >> np.uint64(24)) % np.uint64(1_000_003)).astype(np.float64) / 1_000_003 * 6.283
        v = np.sin(np.outer(a, self._freq) + b[:, None]).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [len(t) // 5 + 2 for t in texts]


def student_dir(root: Path) -> Path:
    """A 2-layer, 128-wide BERT with all-MiniLM-L6-v2's tokenizer, reading 512 tokens (built once)."""
    folder = root / "student"
    if (folder / "modules.json").is_file():
        return folder
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    backbone = root / "student-backbone"
    tokenizer = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    tokenizer.save_pretrained(backbone)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=512)  # fmt: skip
    BertModel(config).save_pretrained(backbone)
    transformer = Transformer(str(backbone), max_seq_length=512)
    model = SentenceTransformer(modules=[transformer, Pooling(128, pooling_mode="mean")], device="cpu")
    model.save(str(folder))
    return folder


def spec(root: Path, n: int) -> str:
    return f"{corpus_path(root)}::limit={n}"


def cache_dir(root: Path, n: int) -> Path:
    return root / f"cache-{size_name(n)}"


def leaf_for(root: Path):
    from leaf_hub.leaf import build_leaf
    from leaf_hub.models import load_model

    teacher = StandInTeacher()
    student = load_model(str(student_dir(root)), device="cpu")
    return build_leaf(
        student, teacher.dimension, teacher.normalized, dict(teacher.prompts), teacher.max_seq_length
    )


# --------------------------------------------------------------------------------------------------
# Phases (each in its own process).
# --------------------------------------------------------------------------------------------------


def phase_ingest(root: Path, n: int) -> dict:
    from leaf_hub.data.store import ingest

    memory = Memory()
    t = time.time()
    store = ingest([spec(root, n)], cache_dir(root, n) / "texts", seed=0)
    return {"rows": len(store), "seconds": round(time.time() - t, 1), **memory.report()}


def phase_cache(root: Path, n: int) -> dict:
    from leaf_hub.data.store import ingest
    from leaf_hub.teachers.cache import TeacherCache

    store = ingest([spec(root, n)], cache_dir(root, n) / "texts", seed=0)
    memory = Memory()
    t = time.time()
    targets = TeacherCache(cache_dir(root, n), shard_size=2048).prepare(StandInTeacher(), store)
    return {"rows": len(targets), "seconds": round(time.time() - t, 1), **memory.report()}


def phase_tokenize(root: Path, n: int) -> dict:
    from leaf_hub.data.store import ingest
    from leaf_hub.data.tokens import build_tokens

    store = ingest([spec(root, n)], cache_dir(root, n) / "texts", seed=0)
    leaf = leaf_for(root)
    memory = Memory()
    t = time.time()
    tokens = build_tokens(store, leaf[0].tokenizer, dict(StandInTeacher.prompts), leaf.max_seq_length,
                          cache_dir(root, n) / "tokens")  # fmt: skip
    return {
        "rows": len(tokens),
        "tokens": int(tokens.offsets[-1]),
        "seconds": round(time.time() - t, 1),
        "truncated": tokens.report.truncated_total,
        **memory.report(),
    }


def pipeline_rate(data, seconds: float = 8.0, batch_size: int = 32) -> float:
    """Batches of 32 per second that TrainData.batch serves on one core, in the training loop's order."""
    import torch

    from leaf_hub.training.batching import length_grouped_batches

    torch.set_num_threads(1)
    batches = length_grouped_batches(data.lengths[data.train_idx], batch_size, seed=7, epoch=0)
    done, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds and done < len(batches):
        data.batch(data.train_idx[batches[done]])
        done += 1
    return round(done / (time.perf_counter() - t), 1)


def batch_width(data, steps: int, batch_size: int = 32) -> float:
    """Mean padded length of the batches the run trained on (a step's cost grows with it)."""
    from leaf_hub.training.batching import length_grouped_batches

    batches = length_grouped_batches(data.lengths[data.train_idx], batch_size, seed=0, epoch=0)[:steps]
    return round(float(np.mean([data.lengths[data.train_idx[b]].max() for b in batches])), 1)


class StepClock:
    """Wraps the training loss: the time of each training step (validation does not call it)."""

    def __init__(self):
        from leaf_hub.training import loss

        self.times: list[float] = []
        real = loss.leaf_loss

        def timed(pred, target):
            self.times.append(time.time())
            return real(pred, target)

        loss.leaf_loss = timed

    def report(self, skip: int = 5) -> dict:
        t = self.times
        rate = (len(t) - 1 - skip) / (t[-1] - t[skip]) if len(t) > skip + 2 else None
        return {
            "time_to_first_step_s": round(t[0] - START, 1) if t else None,
            "steps_per_s": rate and round(rate, 2),
        }


def phase_train(root: Path, n: int, steps: int) -> dict:
    import torch

    from leaf_hub import teachers
    from leaf_hub.training import data as data_module
    from leaf_hub.training import distill as distill_module
    from leaf_hub.training import trainer

    memory = Memory()
    clock = StepClock()
    # distill() imports these inside the function, from their modules: patch them there.
    teachers.load_teacher = lambda *a, **k: StandInTeacher()
    seen = {}
    real_train = trainer.train

    def train(leaf, data, out, config, resume=False, **kwargs):
        seen["data"] = data
        seen["train_called_s"] = round(time.time() - START, 1)  # stores open, warm start done
        return real_train(leaf, data, out, config, resume=resume, **kwargs)

    trainer.train = train
    real_prepare = data_module.prepare_train_data

    def prepare_train_data(*args, **kwargs):
        prepared = real_prepare(*args, **kwargs)
        seen["stores_ready_s"] = round(time.time() - START, 1)  # texts, cache, tokens opened and checked
        return prepared

    data_module.prepare_train_data = prepare_train_data
    torch.set_num_threads(2)
    out = root / f"run-{size_name(n)}"
    shutil.rmtree(out, ignore_errors=True)
    result = distill_module.distill(
        teacher="stand-in", student=str(student_dir(root)), data=[spec(root, n)], output=out,
        cache=cache_dir(root, n), max_steps=steps, eval_every=10 * steps, save_every=10 * steps, batch_size=32,
    )  # fmt: skip
    data = seen["data"]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "rows": result.num_texts,
        "stores_ready_s": seen["stores_ready_s"],
        "warm_start_done_s": seen["train_called_s"],
        **clock.report(),
        "mean_batch_width": batch_width(data, steps),
        "pipeline_batches_per_s_1core": pipeline_rate(data),
        **memory.report(),
        "disk_gb": round(du(cache_dir(root, n)), 2),
    }


def phase_open(root: Path, n: int) -> dict:
    """The stores of one size opened as a run opens them (no model work): the text store; the teacher cache
    and the token store first with every CRC checked (as the first run after they were written), then again
    as a rerun opens them (files unchanged since their check are not read again); then random batches of 32
    teacher vectors read back, and the RSS that leaves mapped."""
    from leaf_hub.data.store import ingest
    from leaf_hub.data.tokens import CHECKED, TokenStore
    from leaf_hub.teachers import cache as cache_module
    from leaf_hub.teachers.cache import TeacherCache

    memory = Memory()
    folder = cache_dir(root, n)
    t = time.time()
    store = ingest([spec(root, n)], folder / "texts", seed=0)
    t_store = time.time() - t
    # The token store, once complete (the stores' checks can be measured while it is still being built).
    token_folder = next((p.parent for p in (folder / "tokens").glob("*/manifest.json")), None)
    timings = {}
    for run in ("full_check", "rerun"):
        if run == "full_check":
            (folder / cache_module.CHECKED).unlink(missing_ok=True)
            if token_folder:
                (token_folder / CHECKED).unlink(missing_ok=True)
        t = time.time()
        targets = TeacherCache(folder, shard_size=2048).prepare(StandInTeacher(), store)
        timings[f"cache_open_{run}_s"] = round(time.time() - t, 1)
        if token_folder:
            t = time.time()
            TokenStore(token_folder)
            timings[f"tokens_open_{run}_s"] = round(time.time() - t, 1)
    batches = np.random.default_rng(0).integers(0, len(targets), size=(2000, 32))
    t = time.time()
    for rows in batches:
        targets[rows]
    rate = len(batches) / (time.time() - t)
    return {
        "rows": len(store),
        "text_store_open_s": round(t_store, 1),
        **timings,
        "random_target_batches_per_s_1core": round(rate, 1),
        "targets_read_positionally": targets.reads_positionally,
        "rss_after_reads_gb": round(Memory._read()[0] / 2**30, 3),
        **memory.report(),
    }


def phase_memory(root: Path, n: int) -> dict:
    """Where a run's O(n) anonymous memory goes: RssAnon after the model, the stores as distill opens them,
    and one epoch of the sampler's batches (no warm start, no training)."""
    from leaf_hub.training.config import DistillConfig
    from leaf_hub.training.data import prepare_train_data, read_texts
    from leaf_hub.training.sampler import LengthGroupedBatchSampler, TrainDataset

    def anon() -> float:
        return round(Memory._read()[1] / 2**30, 3)

    out = {"start_anon_gb": anon()}
    leaf = leaf_for(root)
    out["model_anon_gb"] = anon()
    config = DistillConfig(teacher="stand-in", student=str(student_dir(root)), data=[spec(root, n)],
                           output=root / "memory-run", cache=cache_dir(root, n))  # fmt: skip
    texts = read_texts(config)
    data = prepare_train_data(config, texts=texts, teacher=StandInTeacher(), leaf=leaf).data
    out["stores_anon_gb"] = anon()
    sampler = LengthGroupedBatchSampler(TrainDataset(data, data.train_idx), 32, seed=0)
    batches = sampler.all_batches()  # what the sampler holds for an epoch while it hands out batches
    next(iter(sampler))
    out["epoch_batches_anon_gb"] = anon()
    return {"rows": len(data), "batches": len(batches), **out}


class LegacyTrainData:
    """TrainData as it was before the out-of-core path: Python lists of ids, rows padded one at a time."""

    def __init__(self, input_ids, targets, train_idx, val_idx, pad_token_id):
        import torch

        self._torch = torch
        self.input_ids, self.targets = input_ids, targets
        self.train_idx, self.val_idx, self.pad_token_id = train_idx, val_idx, pad_token_id
        self.lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, rows, with_target: bool = True):
        torch = self._torch
        rows = np.asarray(rows)
        seqs = [self.input_ids[i] for i in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.as_tensor(seq)
            mask[row, : len(seq)] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if with_target:
            out["target"] = torch.from_numpy(np.asarray(self.targets[rows], dtype=np.float32))
        return out


def phase_legacy(root: Path, n: int, steps: int, limit_gb: float) -> dict:
    """Today's path: texts, targets (float32) and token-id lists all in memory; the cache is reused."""
    import torch

    from leaf_hub.data.texts import load_texts
    from leaf_hub.leaf import projection
    from leaf_hub.teachers.cache import TeacherCache
    from leaf_hub.training.config import TrainConfig
    from leaf_hub.training.distill import split_validation, tokenize_for_leaf
    from leaf_hub.training.trainer import train
    from leaf_hub.training.warm_start import fit_ridge_projection, pooled_embeddings, set_projection

    stage = {"name": "start"}

    def stop(rss: int) -> None:
        emit({"rows": n, "stopped": f"RSS {rss / 2**30:.1f} GB > {limit_gb} GB while {stage['name']}",
              "seconds": round(time.time() - START, 1), "peak_rss_gb": round(rss / 2**30, 2)})  # fmt: skip
        os._exit(3)

    memory = Memory(limit_gb, stop)
    clock = StepClock()
    torch.set_num_threads(2)
    stage["name"] = "reading texts"
    records = load_texts([spec(root, n)], seed=0).records
    texts, kinds = [r.text for r in records], [r.kind for r in records]
    stage["name"] = "loading the cache"
    teacher = StandInTeacher()
    targets = TeacherCache(cache_dir(root, n), shard_size=2048).build(teacher, texts, kinds)
    leaf = leaf_for(root)
    stage["name"] = "tokenizing"
    ids = tokenize_for_leaf(leaf, texts, kinds, dict(teacher.prompts))
    train_idx, val_idx = split_validation(len(texts), 128, 32, 0)
    data = LegacyTrainData(ids, targets, train_idx, val_idx, leaf[0].tokenizer.pad_token_id or 0)
    stores_ready = round(time.time() - START, 1)
    stage["name"] = "warm start"
    rows = train_idx[np.random.default_rng(0).permutation(len(train_idx))[:20000]]
    w, _ = fit_ridge_projection(
        pooled_embeddings(leaf, [ids[i] for i in rows], data.pad_token_id), targets[rows]
    )
    set_projection(projection(leaf), w)
    stage["name"] = "training"
    data_ready = round(time.time() - START, 1)
    out = root / f"legacy-{size_name(n)}"
    shutil.rmtree(out, ignore_errors=True)
    train(
        leaf,
        data,
        out,
        TrainConfig(batch_size=32, max_steps=steps, eval_every=10 * steps, save_every=10 * steps),
    )
    shutil.rmtree(out, ignore_errors=True)
    return {
        "rows": len(texts),
        "stores_ready_s": stores_ready,
        "warm_start_done_s": data_ready,
        **clock.report(),
        "mean_batch_width": batch_width(data, steps),
        "pipeline_batches_per_s_1core": pipeline_rate(data),
        **memory.report(),
    }


# --------------------------------------------------------------------------------------------------
# The orchestration.
# --------------------------------------------------------------------------------------------------


def record(out: str, key: str, phase: str, value: dict) -> None:
    """Add one phase's result to the results file (two orchestrators may write it: each merges in turn)."""
    path = Path(out)
    folder = os.open(path.parent, os.O_RDONLY)  # the lock: the folder itself, so no lock file is left behind
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        results.setdefault(key, {})[phase] = value
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(path)
    finally:
        os.close(folder)


def run_phase(args, phase: str, n: int, *extra: str, nice: int = 0) -> dict:
    cmd = [sys.executable, __file__, phase, "--root", str(args.root), "--size", str(n), "--steps", str(args.steps),
           "--legacy-limit-gb", str(args.legacy_limit_gb), *extra]  # fmt: skip
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    print(f"== {phase} {size_name(n)} ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    t = time.time()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    lines = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    result = lines[-1] if lines else {"error": f"exit {proc.returncode}"}
    result["wall_s"] = round(time.time() - t, 1)
    print(f"   {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def setup(args) -> dict:
    return {
        "cpu_cores": os.cpu_count(), "torch_threads": 2, "steps": args.steps, "batch_size": 32,
        "teacher": "stand-in, 1024-d, float16 cache", "student": "BERT 2x128 with all-MiniLM-L6-v2's tokenizer, 512 tokens",
        "mix": {k: {"rows": v[0], "kind": v[1], "median_words": v[2], "max_words": v[4]} for k, v in MIX.items()},
    }  # fmt: skip


def run_prepare(args) -> None:
    """Ingest, cache and tokenize each size: long, so niced and (by default) outside the CPU lock."""
    record(args.out, "setup", "bench", setup(args))
    for n in [parse_size(s) for s in args.sizes.split(",")]:
        for phase in ("ingest", "cache", "tokenize"):
            with locked(args.prepare_lock):
                result = run_phase(args, phase, n, nice=args.nice)
            if phase == "tokenize":
                result["disk"] = disk(cache_dir(args.root, n))
            record(args.out, size_name(n), phase, result)


def run_measure(args) -> None:
    """The timed training runs and the in-memory baseline, each alone under the CPU lock."""
    record(args.out, "setup", "bench", setup(args))
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else []
    legacy = [parse_size(s) for s in args.legacy.split(",")] if args.legacy else []
    phases = args.phases.split(",")
    for repeat in range(args.first_repeat, args.first_repeat + args.repeats):
        for n in sizes:
            if "train" in phases:
                with locked(args.lock):
                    result = run_phase(args, "train", n)
                record(args.out, size_name(n), f"train_{repeat}", result)
            for phase in ("open", "memory"):  # the stores alone: once per size
                if phase in phases and repeat == args.first_repeat:
                    with locked(args.lock):
                        record(args.out, size_name(n), phase, run_phase(args, phase, n))
        for n in legacy:
            with locked(args.lock):
                result = run_phase(args, "legacy", n)
            record(args.out, f"legacy-{size_name(n)}", f"train_{repeat}", result)
    print(table(json.loads(Path(args.out).read_text())))


def disk(folder: Path) -> dict:
    """GB on disk of one size's cache folder: text store, token store, teacher shards."""
    texts, tokens = du(folder / "texts"), du(folder / "tokens")
    return {
        "texts_gb": round(texts, 3),
        "tokens_gb": round(tokens, 3),
        "teacher_gb": round(du(folder) - texts - tokens, 3),
        "total_gb": round(du(folder), 3),
    }


def table(results: dict) -> str:
    """Two markdown tables: the preparation of each size, and the timed training runs."""

    def cell(r: dict | None, key: str, fmt: str = "{}") -> str:
        return fmt.format(r[key]) if r and r.get(key) is not None else "-"

    sizes = sorted((k for k in results if k != "setup" and not k.startswith("legacy-")), key=parse_size)
    prep = [
        "| texts | ingest s / peak RSS GB | teacher cache s / GB | tokenize s / GB (tokens) | disk GB: texts + tokens + teacher = total |",
        "|---:|---|---|---|---|",
    ]  # fmt: skip
    for name in sizes:
        r = results[name]
        ing, cac, tok = r.get("ingest"), r.get("cache"), r.get("tokenize")
        d = (tok or {}).get("disk")
        disk = f"{d['texts_gb']} + {d['tokens_gb']} + {d['teacher_gb']} = {d['total_gb']}" if d else "-"
        prep.append(
            f"| {cell(ing, 'rows', '{:,}')} | {cell(ing, 'seconds')} / {cell(ing, 'peak_rss_gb')} | "
            f"{cell(cac, 'seconds')} / {cell(cac, 'peak_rss_gb')} | {cell(tok, 'seconds')} / "
            f"{cell(tok, 'peak_rss_gb')} ({cell(tok, 'tokens', '{:,}')}) | {disk} |"
        )
    train = [
        "| path | texts | stores ready s | warm start done s | first step s | steps/s | batch width | pipeline batches/s (1 core) | peak RSS GB (anon) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    legacy = sorted(
        (k for k in results if k.startswith("legacy-")), key=lambda k: parse_size(k[len("legacy-") :])
    )
    for name in sizes + legacy:  # out-of-core by size, then the baseline by size
        r = results[name]
        for t in (v for k, v in r.items() if k.startswith("train_")):
            path = "legacy (in memory)" if name.startswith("legacy-") else "out-of-core"
            if "stopped" in t:
                train.append(
                    f"| {path} | {t['rows']:,} | stopped: {t['stopped']} after {t['seconds']} s |||||||"
                )
                continue
            if "error" in t:
                train.append(f"| {path} | {name} | {t['error']} |||||||")
                continue
            train.append(
                f"| {path} | {cell(t, 'rows', '{:,}')} | {cell(t, 'stores_ready_s')} | {cell(t, 'warm_start_done_s')} | "
                f"{cell(t, 'time_to_first_step_s')} | {cell(t, 'steps_per_s')} | {cell(t, 'mean_batch_width')} | "
                f"{cell(t, 'pipeline_batches_per_s_1core')} | {cell(t, 'peak_rss_gb')} ({cell(t, 'peak_anon_gb')}) |"
            )
    stores = [
        "| texts | cache + tokens opened s: every CRC / rerun | random batches of 32 targets /s (1 core) | RSS after them GB | anonymous GB: model / + stores / + an epoch's batches |",
        "|---:|---|---:|---:|---|",
    ]  # fmt: skip
    for name in sizes:
        o, m = results[name].get("open"), results[name].get("memory")
        if o or m:
            opened = (
                f"{cell(o, 'cache_open_full_check_s')} + {cell(o, 'tokens_open_full_check_s')} / "
                f"{cell(o, 'cache_open_rerun_s')} + {cell(o, 'tokens_open_rerun_s')}"
                if o and "cache_open_rerun_s" in o
                else cell(o, "cache_open_and_check_s")
            )
            stores.append(
                f"| {cell(o or m, 'rows', '{:,}')} | {opened} | {cell(o, 'random_target_batches_per_s_1core')} | "
                f"{cell(o, 'rss_after_reads_gb')} | {cell(m, 'model_anon_gb')} / {cell(m, 'stores_anon_gb')} / "
                f"{cell(m, 'epoch_batches_anon_gb')} |"
            )
    return "\n".join(prep) + "\n\n" + "\n".join(train) + "\n\n" + "\n".join(stores) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "phase",
        choices=[
            "all",
            "prepare",
            "measure",
            "corpus",
            "ingest",
            "cache",
            "tokenize",
            "train",
            "legacy",
            "open",
            "memory",
            "table",
        ],
    )
    parser.add_argument(
        "--root", type=Path, required=True, help="work folder (corpus, caches: ~35 GB at 6.4M)"
    )
    parser.add_argument("--size", type=int, help="texts (one phase)")
    parser.add_argument("--sizes", default="100k,1M,6.4M")
    parser.add_argument("--legacy", default="100k,1M", help="sizes of today's in-memory path (the baseline)")
    parser.add_argument("--rows", default="6.41M", help="corpus rows (corpus phase)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--phases", default="train,open,memory", help="measure: which of train, open, memory to run per size"
    )
    parser.add_argument(
        "--first-repeat", type=int, default=0, help="number of the first repeat (adds train_N to the results)"
    )
    parser.add_argument("--legacy-limit-gb", type=float, default=8.0, help="stop the baseline past this RSS")
    parser.add_argument("--lock", help="flock this file around each timed run (the shared CPU lock)")
    parser.add_argument(
        "--prepare-lock", help="flock this file around each preparation phase (default: none)"
    )
    parser.add_argument("--nice", type=int, default=19, help="niceness of the preparation phases")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    from leaf_hub.offline import ensure_hub_reachable_or_offline

    ensure_hub_reachable_or_offline()  # the student's tokenizer loads from the local cache without the Hub
    if args.phase == "all":
        run_prepare(args)
        return run_measure(args)
    if args.phase == "prepare":
        return run_prepare(args)
    if args.phase == "measure":
        return run_measure(args)
    if args.phase == "table":
        return print(table(json.loads(Path(args.out).read_text())))
    if args.phase == "corpus":
        return make_corpus(args.root, parse_size(args.rows))
    phases = {
        "ingest": lambda: phase_ingest(args.root, args.size),
        "cache": lambda: phase_cache(args.root, args.size),
        "tokenize": lambda: phase_tokenize(args.root, args.size),
        "train": lambda: phase_train(args.root, args.size, args.steps),
        "legacy": lambda: phase_legacy(args.root, args.size, args.steps, args.legacy_limit_gb),
        "open": lambda: phase_open(args.root, args.size),
        "memory": lambda: phase_memory(args.root, args.size),
    }
    emit(phases[args.phase]())


if __name__ == "__main__":
    main()
