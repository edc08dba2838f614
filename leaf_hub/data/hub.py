"""``hf:`` sources: Hugging Face datasets streamed (never downloaded whole), and the check that the Hub is there.

A dataset is streamed with ``datasets``, shuffled with a bounded buffer and the seed (so a sample is not
just the first rows of the first file, and is the same on every run), cut at ``limit`` rows, and handed
on in batches. A Hub id and a local dataset folder take the same path. Every failure becomes one
:class:`LeafHubError` that names the dataset and what to check.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from leaf_hub.data.readers import BATCH_ROWS, Batch, Columns, quiet_batches, quiet_datasets
from leaf_hub.data.specs import DEFAULT_HF_LIMIT, HF_SHUFFLE_BUFFER, Source
from leaf_hub.errors import LeafHubError
from leaf_hub.offline import ensure_hub_reachable_or_offline, hub_offline


def hub_reachable() -> bool:
    if hub_offline(datasets=True):
        return False
    return _probe_hub()


@functools.lru_cache(maxsize=1)
def _probe_hub() -> bool:
    """One connection attempt per process; when it fails, huggingface_hub is switched to offline mode."""
    return ensure_hub_reachable_or_offline()


def require_hub(sources: list[Source]) -> None:
    """One error listing every source that needs the Hub, when the Hub cannot be used."""
    sources = [s for s in sources if s.needs_hub]
    if not sources or hub_reachable():
        return
    names = ", ".join(f"{s.title} (hf:{s.target})" if s.title else f"hf:{s.target}" for s in sources)
    raise LeafHubError(
        f"these data sets need the Hugging Face Hub, which is unreachable or switched off (HF_HUB_OFFLINE): "
        f"{names}; run where the Hub is reachable, or give local files (--data FILE.jsonl) or the offline "
        "sets builtin, bert-tokens and words"
    )


def read_hf(source: Source, seed: int, batch_rows: int | None = None) -> Iterator[Batch]:
    """(texts, kinds) batches of ``limit`` shuffled rows of a dataset (``limit=all``: every row)."""
    opts = source.options
    dataset = source.target
    limit = source.limit if opts.get("limit") != "all" else None
    if "limit" not in opts:
        limit = DEFAULT_HF_LIMIT
    label = f"hf:{dataset}" + (f" (config {opts['config']})" if opts.get("config") else "")
    page = f"https://huggingface.co/datasets/{dataset}"
    cols = Columns(source, where=label)
    where_column, _, where_value = opts.get("where", "").partition(":")

    def fail(exc: BaseException) -> LeafHubError:
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        if isinstance(exc, ConnectionError) or "OfflineModeIsEnabled" in detail:
            hint = "the Hugging Face Hub is needed to stream it; run where the Hub is reachable or give a local file"
        elif "scripts are no longer supported" in detail:
            hint = "the dataset uses a loading script; try '::revision=refs/convert/parquet' (the Hub's parquet export)"
        elif source.needs_hub:
            hint = (
                f"check the id, config= and split= on {page}, and log in with `hf auth login` if it is gated"
            )
        else:
            hint = "check the folder holds data files (.parquet, .jsonl, .csv, ...) and the config= and split= options"
        return LeafHubError(f"could not read {label} ({type(exc).__name__}: {detail}); {hint}")

    def check(columns) -> None:
        cols.check(columns)
        if where_column and where_column not in columns:
            raise LeafHubError(
                f"{label} has no column {where_column!r} for where={opts['where']} (its columns: "
                f"{', '.join(columns)}); fix the where= option"
            )

    try:
        import datasets

        path = str(Path(dataset).expanduser()) if not source.needs_hub else dataset
        with quiet_datasets():
            ds = datasets.load_dataset(
                path,
                opts.get("config") or None,
                split=opts.get("split", "train"),
                streaming=True,
                revision=opts.get("revision") or None,
                data_files=opts.get("data_files") or None,
            )
        checked = bool(getattr(ds, "column_names", None))
        if checked:
            check(ds.column_names)
        if where_column:
            ds = ds.filter(lambda row: str(row.get(where_column)) == where_value)
        buffer = HF_SHUFFLE_BUFFER if limit is None else min(HF_SHUFFLE_BUFFER, max(limit, 1))
        ds = ds.shuffle(seed=seed, buffer_size=buffer)
        if limit is not None:
            ds = ds.take(limit)
        batches = ds.iter(batch_size=batch_rows or BATCH_ROWS)
    except LeafHubError:
        raise
    except (
        Exception
    ) as exc:  # datasets raises many types (ConnectionError, ValueError, FileNotFoundError, ...)
        raise fail(exc) from exc

    def where(row: int) -> str:
        return f"row {row + 1} of {label}"

    row = 0
    for batch in quiet_batches(batches, fail):
        if not checked:
            check(batch.keys())
            checked = True
        texts, kinds = cols.rows(batch, row, where)
        row += len(texts)
        yield texts, kinds
