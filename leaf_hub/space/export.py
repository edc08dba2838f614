"""``leaf-hub space --export DIR``: write a Hugging Face Space folder that deploys as it is.

leaf-hub is not on PyPI, so a Space cannot ``pip install`` it. The export therefore vendors the few
``leaf_hub`` modules the app runs on (found by following the imports of :mod:`leaf_hub.space.app`, not by a
hand-kept list) into ``DIR/leaf_hub/``, next to an ``app.py`` that imports that copy first, and writes a
``requirements.txt`` of exactly the third-party packages those modules import, with leaf-hub's own lower
bounds. ``README.md`` carries the Space front matter (sdk, app_file, the leaf and teacher as ``models:``,
a short description) and ``app.py`` defaults to the same two ids, so the folder needs no Space variables.

The Space has to load its models from the Hub, so both must be Hub ids: a local leaf folder needs
``--leaf-repo-id`` naming where it is (or will be) published with ``leaf-hub publish``.

The app and README texts live here rather than being read from the repository's ``space/`` folder,
because an installed leaf-hub has no ``space/`` folder; ``space/`` holds the same files rendered for the
placeholder leaf id (a test keeps them in sync), which run from a checkout with ``python space/app.py``.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

PACKAGE = "leaf_hub"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What app.py imports; the package's __init__ always runs first.
APP_ENTRY = ("leaf_hub", "leaf_hub.space.app")
# Imported by leaf_hub.space.app only for `leaf-hub space --export`, which never runs inside a Space.
NOT_VENDORED = frozenset({"leaf_hub.space.export"})
SPACE_SDK = "gradio"
# The gradio release the app was built and tested with; the Space installs exactly this one.
SDK_VERSION = "6.31.0"
PYTHON_VERSION = "3.11"
DEFAULT_TITLE = "Leaf vs Teacher"
# The leaf the repository's space/ folder names until a real one is exported.
PLACEHOLDER_LEAF = "leaf-hub/all-MiniLM-L6-v2-leaf-mpnet"
PLACEHOLDER_TEACHER = "sentence-transformers/all-mpnet-base-v2"
SHORT_DESCRIPTION = "Compare a small LEAF embedding model with its teacher"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

APP_TEMPLATE = Template('''\
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

LEAF_MODEL = os.environ.get("LEAF_MODEL") or $leaf
TEACHER_MODEL = os.environ.get("TEACHER_MODEL") or $teacher

demo = build_app(LEAF_MODEL, TEACHER_MODEL, os.environ.get("REPORT_DIR") or None)

if __name__ == "__main__":
    serving_threads()  # two requests at a time, one PyTorch thread each (measured on 2 vCPU)
    # Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space sets them).
    demo.launch(**launch_kwargs())
''')

README_TEMPLATE = Template("""\
---
title: $title
emoji: 🍃
colorFrom: green
colorTo: blue
sdk: $sdk
sdk_version: $sdk_version
python_version: "$python_version"
app_file: app.py
pinned: false
license: apache-2.0
models:
  - $leaf
  - $teacher
short_description: $short_description
tags:
  - sentence-transformers
  - embeddings
  - distillation
  - leaf
---

# Leaf vs teacher

A *leaf* is a small text-embedding model distilled with leaf-hub ([LEAF, arXiv 2509.12539](https://arxiv.org/abs/2509.12539)) so
that its embeddings live in the vector space of a large *teacher*: documents embedded once by the teacher
can be searched with queries embedded by the cheap leaf. This Space compares the leaf
[`$leaf`](https://huggingface.co/$leaf) with its teacher
[`$teacher`](https://huggingface.co/$teacher).

It shows, side by side:

- **Compare rankings** — a query and up to 20 documents (one per line, at most 2,000 characters each),
  scored by cosine similarity under the teacher, the leaf, and the asymmetric pair (leaf query, teacher
  documents), with each model's ranks, Kendall τ and top-k overlap against the teacher, and the time
  each model took. Ready examples are one click away.
- **Sentence pair** — the similarity of two sentences under teacher and leaf.
- **Card facts** — sizes, measured speed-ups and evaluation results (from `eval_report.json` and
  `bench_report.json` in the leaf's repository, when present).
- **Matryoshka dimensions and quantization** — a dimension slider and a none / int8 / binary toggle
  rescore the same embeddings as an index truncated or quantized that way would.

## Scripting

```python
from gradio_client import Client

client = Client("<owner>/<space>")  # or http://127.0.0.1:7860 for a local run
table = client.predict(
    "how do vaccines work?",
    "Vaccines train the immune system.\\nThe stock market fell.",
    api_name="/compare",
)
# table["headers"], table["data"]: one row per document with scores and ranks;
# optional arguments: dimensions (0 = all) and precision ("none", "int8", "binary").
```

## Configuration

Space variables, all optional:

- `LEAF_MODEL`: the leaf's Hub id (default `$leaf`)
- `TEACHER_MODEL`: its teacher (default `$teacher`)
- `REPORT_DIR`: a folder with `eval_report.json` / `bench_report.json` (default: the leaf's repo)

The folder is written by `leaf-hub space --export DIR --leaf ID --teacher ID`: `app.py`, this README,
`requirements.txt` (third-party packages only) and `leaf_hub/`, the few leaf-hub modules the app runs on
(leaf-hub is not on PyPI). Publish it with `leaf-hub publish DIR --repo-id USER/SPACE`, after the leaf.
Locally: `python app.py` in that folder (`LEAF_MODEL=./run/leaf python app.py` for a local leaf), or
`leaf-hub space --leaf ./run/leaf --teacher $teacher`.
""")


@dataclass
class SpaceExport:
    """What an export wrote: the folder, its files (relative paths) and the model ids it serves."""

    folder: Path
    files: list[str]
    leaf_id: str
    teacher_id: str
    vendored: list[str]  # module names copied into leaf_hub/


# -- which leaf_hub modules the app needs ----------------------------------------------------------------
def _module_file(name: str) -> Path | None:
    """The source file of leaf_hub module ``name`` in this installation, or None when there is none."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _import_nodes(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of the file, at module level or inside functions (lazy imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _from_base(node: ast.ImportFrom, module_name: str, is_package: bool) -> str:
    """The absolute module of ``from X import ...``, resolving relative imports against ``module_name``."""
    if not node.level:
        return node.module or ""
    package = module_name if is_package else module_name.rpartition(".")[0]
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imported_modules(path: Path, module_name: str) -> set[str]:
    """Absolute names of the modules a file imports (``from pkg import mod`` counts ``pkg.mod``)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = _from_base(node, module_name, is_package)
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if _module_file(f"{base}.{alias.name}"))
    names.discard("")
    return names


def vendored_modules(entry: tuple[str, ...] = APP_ENTRY) -> dict[str, Path]:
    """The leaf_hub modules reachable from ``entry`` by imports (minus NOT_VENDORED): name -> source file.

    A module's parent packages come along, since importing it runs their ``__init__``.
    """
    found: dict[str, Path] = {}
    todo = list(entry)
    while todo:
        name = todo.pop()
        if name in found or name in NOT_VENDORED:
            continue
        path = _module_file(name)
        if path is None:
            raise LeafHubError(f"{name} is imported by the Space but has no source file in {PACKAGE_DIR}")
        found[name] = path
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        todo.extend(m for m in imported_modules(path, name) if m == PACKAGE or m.startswith(PACKAGE + "."))
    return dict(sorted(found.items()))


def third_party_imports(files: list[Path]) -> set[str]:
    """Top-level names of what the files import from outside the standard library and leaf_hub."""
    tops: set[str] = set()
    for path in files:
        for node in _import_nodes(path):
            if isinstance(node, ast.Import):
                tops.update(alias.name.split(".")[0] for alias in node.names)
            elif not node.level and node.module:
                tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in sys.stdlib_module_names and t not in (PACKAGE, "__future__")}


# -- requirements.txt ------------------------------------------------------------------------------------
def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared_lower_bounds() -> dict[str, tuple[str, str]]:
    """normalized name -> (name as leaf-hub spells it, lower bound) from leaf-hub's own requirements."""
    try:
        requires = metadata.requires("leaf-hub") or []
    except metadata.PackageNotFoundError:
        return {}
    bounds: dict[str, tuple[str, str]] = {}
    for line in requires:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)", line)
        lower = re.search(r">=\s*([^,\s]+)", match.group(2)) if match else None
        if match and lower:
            bounds.setdefault(_normalize(match.group(1)), (match.group(1), lower.group(1)))
    return bounds


def requirements_for(imports: set[str]) -> list[str]:
    """``name>=bound`` lines for the distributions that provide ``imports`` (top-level import names).

    The bound is leaf-hub's own (pyproject.toml, read from the installed metadata); a package leaf-hub
    does not declare gets the installed version as its bound, with a warning to declare it.
    """
    providers = metadata.packages_distributions()
    declared = _declared_lower_bounds()
    lines: dict[str, str] = {}
    for name in sorted(imports):
        dists = providers.get(name)
        if not dists:
            raise LeafHubError(
                f"the Space imports {name!r}, which no installed package provides; install leaf-hub[space]"
            )
        # A name several distributions provide (namespace packages): keep the ones leaf-hub declares.
        chosen = [d for d in dists if _normalize(d) in declared] or list(dists)
        for dist in chosen:
            key = _normalize(dist)
            if key in declared:
                spelled, bound = declared[key]
            else:
                spelled, bound = dist, metadata.version(dist)
                logger.warning(
                    "%s is not among leaf-hub's requirements; the Space needs %s>=%s", dist, dist, bound
                )
            lines[key] = f"{spelled}>={bound}"
    return [lines[key] for key in sorted(lines)]


# -- rendering -------------------------------------------------------------------------------------------
def render_app(leaf_id: str, teacher_id: str) -> str:
    return APP_TEMPLATE.substitute(leaf=json.dumps(leaf_id), teacher=json.dumps(teacher_id))


def render_readme(leaf_id: str, teacher_id: str, title: str = DEFAULT_TITLE) -> str:
    return README_TEMPLATE.substitute(
        title=json.dumps(title, ensure_ascii=False),
        sdk=SPACE_SDK,
        sdk_version=SDK_VERSION,
        python_version=PYTHON_VERSION,
        leaf=leaf_id,
        teacher=teacher_id,
        short_description=SHORT_DESCRIPTION,
    )


def render_requirements(requirements: list[str]) -> str:
    header = (
        "# Third-party packages the app imports, with leaf-hub's lower bounds. leaf-hub itself is not on PyPI:\n"
        "# `leaf-hub space --export` copies the modules the app needs into leaf_hub/ next to app.py.\n"
    )
    return header + "".join(f"{line}\n" for line in requirements)


def space_files(
    leaf_id: str, teacher_id: str, title: str = DEFAULT_TITLE, modules: dict[str, Path] | None = None
) -> dict[str, str]:
    """app.py, README.md and requirements.txt of a Space for the two models (the vendored copy aside)."""
    modules = vendored_modules() if modules is None else modules
    requirements = requirements_for(third_party_imports(list(modules.values())))
    return {
        "app.py": render_app(leaf_id, teacher_id),
        "README.md": render_readme(leaf_id, teacher_id, title),
        "requirements.txt": render_requirements(requirements),
    }


# -- Space folders ---------------------------------------------------------------------------------------
def read_space_config(folder: str | Path) -> dict[str, Any] | None:
    """The README front matter of a Space folder (it names an ``sdk``), or None for any other folder."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(readme)
    except Exception as exc:  # yaml errors: the folder's README is not valid front matter
        raise LeafHubError(f"{readme} has front matter that is not valid YAML ({exc})") from exc
    return meta if isinstance(meta, dict) and meta.get("sdk") else None


def _check_model_id(value: str, what: str) -> str:
    if not _REPO_ID.match(value) or "--" in value or ".." in value:
        raise LeafHubError(f"{what} {value!r} is not a Hub id; it must look like USER/NAME (or ORG/NAME)")
    return value


def _resolve_ids(leaf: str, teacher: str, leaf_repo_id: str | None) -> tuple[str, str]:
    """The Hub ids the Space loads: a local leaf folder stands for ``leaf_repo_id``."""
    leaf_path = Path(leaf).expanduser()
    if leaf_path.exists():
        if not leaf_repo_id:
            raise LeafHubError(
                f"--leaf {leaf} is a local folder, which a Space cannot load; add --leaf-repo-id USER/NAME "
                "naming where it is or will be published (leaf-hub publish)"
            )
        if not (leaf_path / "modules.json").is_file():
            raise LeafHubError(f"--leaf {leaf} has no modules.json: it is not a leaf model folder")
        leaf_id = _check_model_id(leaf_repo_id, "--leaf-repo-id")
    else:
        leaf_id = _check_model_id(leaf, "--leaf (not a local folder either)")
        if leaf_repo_id and leaf_repo_id != leaf_id:
            raise LeafHubError(
                f"--leaf {leaf} is already a Hub id; --leaf-repo-id {leaf_repo_id} contradicts it: drop it"
            )
    if Path(teacher).expanduser().exists():
        raise LeafHubError(
            f"--teacher {teacher} is a local folder, which a Space cannot load; give the teacher's Hub id"
        )
    return leaf_id, _check_model_id(teacher, "--teacher")


def _check_target(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise LeafHubError(f"--export {folder} is a file; give a folder for the Space")
    if (folder / PACKAGE).resolve() == PACKAGE_DIR:
        raise LeafHubError(f"--export {folder} holds the leaf_hub source itself; give another folder")
    if folder.is_dir() and any(folder.iterdir()) and read_space_config(folder) is None:
        raise LeafHubError(
            f"--export {folder} is neither empty nor a Space folder (README.md with an sdk); give a new folder"
        )


def export_space(
    folder: str | Path,
    leaf: str,
    teacher: str,
    *,
    leaf_repo_id: str | None = None,
    title: str | None = None,
) -> SpaceExport:
    """Write the Space for ``leaf`` (Hub id, or local folder published as ``leaf_repo_id``) and ``teacher``.

    An existing Space folder is updated in place: the four generated parts are rewritten, the vendored
    ``leaf_hub/`` replaced as a whole, and other files (say, a .gitattributes) kept.
    """
    leaf_id, teacher_id = _resolve_ids(str(leaf), str(teacher), leaf_repo_id)
    title = DEFAULT_TITLE if title is None else title.strip()
    if not title or "\n" in title:
        raise LeafHubError("--title must be one non-empty line")
    folder = Path(folder).expanduser()
    _check_target(folder)
    modules = vendored_modules()
    texts = space_files(leaf_id, teacher_id, title, modules)
    folder.mkdir(parents=True, exist_ok=True)
    package = folder / PACKAGE
    if package.exists():
        shutil.rmtree(package)
    files = []
    for path in modules.values():
        relative = Path(PACKAGE) / path.relative_to(PACKAGE_DIR)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / relative)
        files.append(relative.as_posix())
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
        files.append(name)
    return SpaceExport(folder, sorted(files), leaf_id, teacher_id, list(modules))
