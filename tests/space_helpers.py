"""Start the Space on a free local port for a test and close it afterwards, in-process or as a process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from embedding_server import free_port


@contextmanager
def launched_space(leaf_dir: Path, teacher_dir: Path, report_dir: Path | None = None) -> Iterator[str]:
    """The app of ``leaf_hub.space.app.build_app`` served on 127.0.0.1; yields its URL."""
    from leaf_hub.space.app import build_app, launch_kwargs

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


def wait_for_app(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Return once the app in ``proc`` answers on ``url``; fail with its output if it exits or never does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the app exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            if httpx.get(url.rstrip("/") + "/config", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the app did not answer on {url} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the app process (kill it if it does not exit within 30 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
