"""Hugging Face Space entry point: compare a leaf embedding model with its teacher.

The app itself is ``leaf_hub.space.build_app`` (installed from requirements.txt). Which models it shows
comes from the Space's variables ``LEAF_MODEL`` and ``TEACHER_MODEL`` (Hub ids, or local folders when
run from a checkout with ``python space/app.py``); ``REPORT_DIR`` optionally points at a folder with
``eval_report.json`` / ``bench_report.json`` (by default they are read from the leaf's folder or Hub repo).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    from leaf_hub.space import build_app, launch_kwargs
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from leaf_hub.space import build_app, launch_kwargs

LEAF_MODEL = os.environ.get("LEAF_MODEL", "leaf-hub/all-MiniLM-L6-v2-leaf-mpnet")
TEACHER_MODEL = os.environ.get("TEACHER_MODEL", "sentence-transformers/all-mpnet-base-v2")

demo = build_app(LEAF_MODEL, TEACHER_MODEL, os.environ.get("REPORT_DIR") or None)

if __name__ == "__main__":
    # Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space sets them).
    demo.launch(**launch_kwargs())
