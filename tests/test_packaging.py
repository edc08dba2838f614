"""The built wheel is complete: installed outside the source tree, it still renders model cards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_card_templates_and_renders_a_card(tmp_path, tiny_leaf_dir):
    wheels = tmp_path / "wheels"
    build = tmp_path / "src"
    # Build from a copy so no build/ or *.egg-info lands in the checkout.
    shutil.copytree(
        ROOT,
        build,
        ignore=shutil.ignore_patterns(".venv", ".git", "runs", "bench", "tests", "*.egg-info", "build"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(build)],
        check=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("leaf_hub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    templates = sorted(p.name for p in (ROOT / "leaf_hub" / "hub" / "templates").glob("*.j2"))
    assert templates and all(f"leaf_hub/hub/templates/{name}" in names for name in templates)

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    leaf = tmp_path / "leaf"
    shutil.copytree(tiny_leaf_dir, leaf)
    script = (
        "import leaf_hub, sys; from leaf_hub.hub.card import TEMPLATES_DIR, render_card;"
        "print(leaf_hub.__file__); print(TEMPLATES_DIR); print(render_card(sys.argv[1])[:2000])"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(leaf)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(target)), "the test must import the installed wheel, not the checkout"
    assert out[1] == str(target / "leaf_hub" / "hub" / "templates")
    card = "\n".join(out[2:])
    assert card.startswith("---\n") and "knowledge-distillation" in card


def test_the_extras_leaf_hub_checks_are_the_ones_pyproject_declares():
    """leaf_hub.extras names, per extra, the modules of the packages pyproject.toml lists for it."""
    import re
    from importlib import metadata

    from leaf_hub.extras import EXTRAS

    declared: dict[str, set[str]] = {}
    for line in metadata.requires("leaf-hub") or []:
        match = re.match(r"([A-Za-z0-9._-]+).*;\s*extra\s*==\s*\"(\w+)\"", line)
        if match and match.group(2) != "dev":
            declared.setdefault(match.group(2), set()).add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    assert set(EXTRAS) == set(declared)
    providers = metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        provided = {re.sub(r"[-_.]+", "-", d).lower() for m in modules for d in providers.get(m, [])}
        assert provided == declared[extra], extra


def test_every_public_name_resolves_to_what_it_names():
    """``from leaf_hub import X`` for every name of the public API (a stale map after a move fails here)."""
    import inspect

    import leaf_hub

    for name in leaf_hub.__all__:
        value = getattr(leaf_hub, name)
        if name != "__version__":
            assert inspect.isclass(value) or inspect.isfunction(value), name
            assert value.__module__.startswith("leaf_hub."), (name, value.__module__)
