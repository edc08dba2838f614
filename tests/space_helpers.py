"""Start the Space on a free local port for a test, and close it afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embedding_server import free_port


@contextmanager
def launched_space(leaf_dir: Path, teacher_dir: Path, report_dir: Path | None = None) -> Iterator[str]:
    """The app of ``leaf_hub.space.build_app`` served on 127.0.0.1; yields its URL."""
    from leaf_hub.space import build_app, launch_kwargs

    demo = build_app(str(leaf_dir), str(teacher_dir), report_dir=report_dir)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_kwargs(),
    )
    try:
        yield url
    finally:
        demo.close()
