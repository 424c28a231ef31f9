"""Importing the package and running prepare never loads a deep-learning framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from fiwfixtures import quirky_fiw


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
        loaded = sorted(m for m in ("tensorflow", "torch", "keras", "jax") if m in sys.modules)
        print("loaded:", loaded)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stdout
