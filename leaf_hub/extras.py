"""Optional extras: which stage needs which ``pip install "leaf-hub[EXTRA]"``, checked before any work.

The core install distils and publishes; exporting to ONNX, evaluating and the Space need packages the core
does not pull in. A stage checks its extra first (:func:`require`), so a user without it gets one line
naming the install command instead of an ImportError from deep inside an exporter, and no half-written
output. The import names per extra mirror ``[project.optional-dependencies]`` in pyproject.toml (a test
keeps them in step).
"""

from __future__ import annotations

import importlib.util

from leaf_hub.errors import LeafHubError

# extra -> the top-level modules its packages provide (distribution names differ: pytrec-eval-terrier).
EXTRAS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime", "onnxscript", "tokenizers"),
    "eval": ("pytrec_eval", "scipy", "matplotlib"),
    "space": ("gradio", "gradio_client"),
    "mteb": ("mteb",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; one of {', '.join(EXTRAS)}")
    absent = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent that fails to import, or a module without a spec
            found = False
        if not found:
            absent.append(module)
    return absent


def require(*extras: str, what: str) -> None:
    """Raise :class:`LeafHubError` naming the install command when an extra ``what`` needs is missing."""
    for extra in extras:
        absent = missing(extra)
        if absent:
            raise LeafHubError(
                f"{what} needs the {extra} extra ({', '.join(absent)} not installed): "
                f'pip install "leaf-hub[{extra}]"'
            )
