"""``leaf-hub space --export``: a Space folder that deploys as it is, runs without leaf-hub installed, and
publishes to a Space repo (tests/hub_server.py)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from embedding_server import free_port
from space_helpers import stop, wait_for_app

from leaf_hub.cli import main
from leaf_hub.space import export as E

REPO = Path(__file__).resolve().parents[1]
TEACHER_ID = "sentence-transformers/all-mpnet-base-v2"
LEAF_REPO = "tester/tiny-leaf"
QUERY = "what is a good book about the history of music"
DOCS = ["a history of music in the old city", "the red car is fast", "music and language: a book"]
APP_MODULES = {
    "__init__.py",
    "errors.py",
    "evaluation/__init__.py",
    "evaluation/quantization.py",  # the one quantization path, shared with the evaluation report
    "models.py",
    "offline.py",
    "space/__init__.py",
    "space/app.py",
    "space/compare.py",
}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _export(folder: Path, leaf: Path | str, *extra: str) -> int:
    return main(["space", "--export", str(folder), "--leaf", str(leaf), "--teacher", TEACHER_ID, *extra])


@pytest.fixture()
def exported(tmp_path, tiny_leaf_dir) -> Path:
    folder = tmp_path / "space"
    assert _export(folder, tiny_leaf_dir, "--leaf-repo-id", LEAF_REPO, "--title", "Tiny leaf: a test") == 0
    return folder


def _front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---", 4)])


def _imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_export_writes_a_self_contained_space(exported):
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert files == sorted(
        ["app.py", "README.md", "requirements.txt", *(f"leaf_hub/{m}" for m in APP_MODULES)]
    )
    for name in APP_MODULES:  # vendored as they are
        assert (exported / "leaf_hub" / name).read_bytes() == (REPO / "leaf_hub" / name).read_bytes()

    # The copy is closed under imports: every leaf_hub module it imports is in it (the exporter aside).
    def vendored(name: str) -> bool:
        base = exported.joinpath(*name.split("."))
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()

    for path in (exported / "leaf_hub").rglob("*.py"):
        for node in _imports(path):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("leaf_hub"):
                names = [node.module] + [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (REPO.joinpath(*node.module.split(".")) / f"{a.name}.py").is_file()
                ]
            for name in names:
                if name.startswith("leaf_hub.") and name not in E.NOT_VENDORED:
                    assert vendored(name), (path.name, name)

    meta = _front_matter(exported / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["sdk_version"] == E.SDK_VERSION
    assert meta["models"] == [LEAF_REPO, TEACHER_ID]
    assert meta["title"] == "Tiny leaf: a test"
    assert 0 < len(meta["short_description"]) <= 60  # the Hub's limit
    app = (exported / "app.py").read_text()
    assert f'os.environ.get("LEAF_MODEL") or "{LEAF_REPO}"' in app
    assert f'os.environ.get("TEACHER_MODEL") or "{TEACHER_ID}"' in app


def test_requirements_cover_every_third_party_import(exported):
    from packaging.requirements import Requirement

    lines = [line.split("#")[0].strip() for line in (exported / "requirements.txt").read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line]
    names = {_normalize(r.name) for r in reqs}
    assert "leaf-hub" not in names and len(names) == len(reqs)
    for req in reqs:  # a real distribution with a lower bound, no URL, no extras of leaf-hub
        assert req.url is None and any(s.operator == ">=" for s in req.specifier), req
        assert metadata.version(req.name)
    providers = metadata.packages_distributions()
    imported = set()
    for path in [exported / "app.py", *(exported / "leaf_hub").rglob("*.py")]:
        for node in _imports(path):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {
        n for n in imported if n not in sys.stdlib_module_names and n not in ("__future__", "leaf_hub")
    }
    assert {"gradio", "numpy", "sentence_transformers", "huggingface_hub"} <= third_party
    for name in third_party:
        assert {_normalize(d) for d in providers[name]} & names, f"{name} is imported but not required"


def test_repository_space_folder_is_the_placeholder_export():
    """space/ is what --export writes for the placeholder leaf (without the vendored copy): no drift."""
    for name, text in E.space_files(E.PLACEHOLDER_LEAF, E.PLACEHOLDER_TEACHER).items():
        assert (REPO / "space" / name).read_text(encoding="utf-8") == text, f"space/{name} is stale"
    assert not (REPO / "space" / "leaf_hub").exists()


SITECUSTOMIZE = textwrap.dedent(
    """
    # Test hook: log where every leaf_hub module is imported from, and refuse the checkout's copy.
    import importlib.abc, json, os, sys
    from pathlib import Path

    BLOCKED = Path(os.environ["BLOCKED_SOURCE"]).resolve()
    LOG = os.environ["IMPORT_LOG"]


    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname != "leaf_hub" and not fullname.startswith("leaf_hub."):
                return None
            spec = None
            for finder in sys.meta_path:
                if finder is not self and hasattr(finder, "find_spec"):
                    spec = finder.find_spec(fullname, path, target)
                    if spec is not None:
                        break
            if spec is None or not spec.origin:
                return spec
            origin = Path(spec.origin).resolve()
            with open(LOG, "a") as log:
                log.write(json.dumps([fullname, str(origin)]) + "\\n")
            if origin.is_relative_to(BLOCKED):
                raise ImportError(f"{fullname} would come from the checkout: {origin}")
            return spec


    sys.meta_path.insert(0, Guard())
    """
)


def test_exported_app_runs_on_its_vendored_copy(exported, tmp_path, tiny_leaf_dir, tiny_teacher_dir):
    """`python app.py` in the exported folder, with the checkout's leaf_hub unimportable, serves /compare."""
    from gradio_client import Client
    from sentence_transformers import SentenceTransformer

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "imports.jsonl"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        "PYTHONPATH": str(hook),
        "PYTHONDONTWRITEBYTECODE": "1",  # keep the folder as exported
        "BLOCKED_SOURCE": str(REPO / "leaf_hub"),
        "IMPORT_LOG": str(log),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "LEAF_MODEL": str(tiny_leaf_dir),
        "TEACHER_MODEL": str(tiny_teacher_dir),
    }
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=exported,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_app(url, proc)
        result = Client(url, verbose=False).predict(QUERY, "\n".join(DOCS), api_name="/compare")
    finally:
        stop(proc)
    origins = dict(json.loads(line) for line in log.read_text().splitlines())
    assert {
        "leaf_hub",
        "leaf_hub.space.app",
        "leaf_hub.space.compare",
        "leaf_hub.models",
        "leaf_hub.errors",
    } <= set(origins)
    for name, origin in origins.items():
        assert Path(origin).is_relative_to(exported.resolve()), (name, origin)

    teacher = SentenceTransformer(str(tiny_teacher_dir), device="cpu")
    leaf = SentenceTransformer(str(tiny_leaf_dir), device="cpu")
    q_t, d_t = teacher.encode_query([QUERY]), teacher.encode_document(DOCS)
    q_l, d_l = leaf.encode_query([QUERY]), leaf.encode_document(DOCS)
    expected = {
        2: teacher.similarity(q_t, d_t)[0].tolist(),
        4: leaf.similarity(q_l, d_l)[0].tolist(),
        6: teacher.similarity(q_l, d_t)[0].tolist(),
    }
    assert [row[1] for row in result["data"]] == DOCS
    for column, values in expected.items():
        for row, value in zip(result["data"], values, strict=True):
            assert abs(row[column] - value) <= 0.5e-4 + 1e-7, (column, row, value)


def test_publish_the_exported_folder_as_a_space(hub, exported, tmp_path, capsys):
    from huggingface_hub import snapshot_download

    local = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert main(["publish", str(exported), "--repo-id", "tester/leaf-space", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tester/leaf-space (space, sdk gradio;" in out and "README.md  (Space config, kept)" in out
    listed = [m.group(1) for m in re.finditer(r"^\s+[\d,]+  (\S+)", out, re.MULTILINE)]
    assert sorted(listed) == local and hub.requests == []

    assert main(["publish", str(exported), "--repo-id", "tester/leaf-space", "--token", hub.token]) == 0
    assert hub.repo("tester/leaf-space", repo_type="space").sdk == "gradio"
    folder = Path(
        snapshot_download(
            "tester/leaf-space",
            repo_type="space",
            endpoint=hub.url,
            token=hub.token,
            cache_dir=tmp_path / "dl",
        )
    )
    downloaded = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".gitattributes"
    )
    assert downloaded == local
    for name in local:
        assert (folder / name).read_bytes() == (exported / name).read_bytes(), name


def test_reexport_updates_the_folder_in_place(exported, capsys):
    (exported / "leaf_hub" / "stale.py").write_text("old")
    (exported / ".gitattributes").write_text("*.bin filter=lfs\n")
    capsys.readouterr()
    assert _export(exported, "tester/published-leaf") == 0
    out = capsys.readouterr().out
    assert f"leaf-hub publish {exported} --repo-id USER/SPACE" in out
    assert "publish the leaf first" not in out  # a Hub id: already published
    assert not (exported / "leaf_hub" / "stale.py").exists()
    assert (exported / ".gitattributes").is_file()  # not ours: kept
    assert _front_matter(exported / "README.md")["models"] == ["tester/published-leaf", TEACHER_ID]


def test_local_leaf_without_repo_id_is_a_one_line_error(tmp_path, tiny_leaf_dir):
    target = tmp_path / "space"
    cmd = [sys.executable, "-m", "leaf_hub", "space", "--export", str(target), "--leaf", str(tiny_leaf_dir)]
    proc = subprocess.run([*cmd, "--teacher", TEACHER_ID], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--leaf-repo-id USER/NAME" in lines[0] and "Traceback" not in proc.stderr
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--leaf-repo-id", "no-slash"], "--leaf-repo-id 'no-slash' is not a Hub id"),
        (
            ["--teacher", "TEACHER_DIR"],
            "is a local folder, which a Space cannot load; give the teacher's Hub id",
        ),
        (["--title", "  "], "--title must be one non-empty line"),
        (["--report-dir", "."], "--report-dir does not apply to --export"),
    ],
)
def test_export_input_errors(tmp_path, tiny_leaf_dir, tiny_teacher_dir, capsys, args, message):
    args = [str(tiny_teacher_dir) if a == "TEACHER_DIR" else a for a in args]
    base = [
        "space",
        "--export",
        str(tmp_path / "space"),
        "--leaf",
        str(tiny_leaf_dir),
        "--teacher",
        TEACHER_ID,
    ]
    if "--leaf-repo-id" not in args:
        base += ["--leaf-repo-id", LEAF_REPO]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_export_refuses_a_folder_that_is_not_a_space(tmp_path, tiny_leaf_dir, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _export(tmp_path, "tester/published-leaf") == 2
    assert "neither empty nor a Space folder" in capsys.readouterr().err
    assert main(["space", "--leaf", str(tiny_leaf_dir), "--teacher", TEACHER_ID, "--title", "x"]) == 2
    assert "only apply with --export" in capsys.readouterr().err


def test_publish_as_space_needs_a_space_folder(tiny_leaf_dir, capsys):
    assert (
        main(["publish", str(tiny_leaf_dir), "--repo-id", "tester/x", "--repo-type", "space", "--dry-run"])
        == 2
    )
    assert "is not a Space folder" in capsys.readouterr().err
