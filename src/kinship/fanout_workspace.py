"""What every node of `kinship fanout` must share with the driver, as digests: a fold trains
only where its inputs (code, params, prepared tables, the member's cache or embeddings, its
weights) are the driver's."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from kinship import paths
from kinship.params import Params, load_params


def global_argv(options: dict) -> list[str]:
    """`kinship`'s global options as the driver was given them."""
    argv = ["--params", str(options["params"])]
    for profile in options.get("profile", []):
        argv += ["--profile", str(profile)]
    return argv


def node_params(options: dict) -> Params:
    return load_params(options["params"], list(options.get("profile", [])))


def workspace_digests(name: str, params: Params) -> dict[str, str]:
    """sha256 of everything a fold of `name` reads: the kinship package's code, the resolved
    params, and by path in the workspace the prepared tables, the member's image cache and its
    report (or a frozen member's embeddings) and its weights folder ("missing" when absent)."""
    package = Path(__file__).parent  # the code that runs: the installed kinship package
    digests = {
        f"kinship/{f.relative_to(package).as_posix()}": _file_sha256(f)
        for f in sorted(package.rglob("*.py"))
    }
    digests["params"] = _sha256(json.dumps(asdict(params), sort_keys=True, default=str).encode())
    inputs = [paths.PREPARED_DIR]
    if name in params.members:
        size = params.members[name].input_size
        inputs += [paths.cache_file(size), paths.CACHE_REPORTS_DIR / f"{size}.json"]
    else:
        inputs += [paths.EMBEDDINGS_DIR, paths.EMBED_REPORT]
    inputs.append(paths.member_weights_dir(name))
    for path in inputs:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if not file.is_dir():
                digests[file.as_posix()] = _file_sha256(file) if file.is_file() else "missing"
    return digests


def differences(expected: dict[str, str], got: dict[str, str]) -> str:
    """The keys whose digests differ, named (at most ten); '' when none."""
    keys = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    return ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
