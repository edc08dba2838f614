"""Hugging Face Space entry point: compare a leaf embedding model with its teacher.

The app is ``leaf_hub.space.app.build_app``. A Space written by ``leaf-hub space --export`` carries the few
leaf_hub modules it needs in ``leaf_hub/`` next to this file, and imports that copy ahead of any installed
leaf-hub (which is not on PyPI); the repository's ``space/`` folder uses the installed package or the
checkout around it. Which models it shows comes from the Space variables ``LEAF_MODEL`` and
``TEACHER_MODEL`` (Hub ids, or local folders for a local run), defaulting to the ids it was exported for;
``REPORT_DIR`` optionally points at a folder with ``eval_report.json`` / ``bench_report.json`` (by default
they are read from the leaf's folder or Hub repo).
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HERE = Path(__file__).resolve().parent
if (HERE / "leaf_hub" / "__init__.py").is_file():  # an exported Space: its vendored copy comes first
    sys.path.insert(0, str(HERE))
elif find_spec("leaf_hub") is None:  # space/ in a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent))

try:
    from leaf_hub.space.app import build_app, launch_kwargs, serving_threads
except ModuleNotFoundError as exc:
    if exc.name != "leaf_hub":
        raise
    sys.exit("leaf_hub is missing: deploy the folder that `leaf-hub space --export DIR` writes")

LEAF_MODEL = os.environ.get("LEAF_MODEL") or "leaf-hub/all-MiniLM-L6-v2-leaf-mpnet"
TEACHER_MODEL = os.environ.get("TEACHER_MODEL") or "sentence-transformers/all-mpnet-base-v2"

demo = build_app(LEAF_MODEL, TEACHER_MODEL, os.environ.get("REPORT_DIR") or None)

if __name__ == "__main__":
    serving_threads()  # two requests at a time, one PyTorch thread each (measured on 2 vCPU)
    # Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space sets them).
    demo.launch(**launch_kwargs())
