"""params.yaml as YAML: reading, merging a profile (a partial params file) on top, and writing the
merge back in place with comments kept. Validation is `kinship.params`'s."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found (run from the repository root)")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return data


REMOVABLE_SECTIONS = ("members", "frozen_members")
"""Sections whose entries a profile removes by setting them to null (`members: {facenet: null}`):
DVC's foreach cannot skip an entry, so a member is dropped by removing its block."""


def deep_merge(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict[str, Any]:
    """`override` on top of `base`, mapping by mapping; validation happens on the result. A null
    entry of a removable section (`members.facenet: null`) removes that entry."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None and path in REMOVABLE_SECTIONS:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, key if not path else f"{path}.{key}")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_merged(params_path: Path, override: dict[str, Any]) -> None:
    """Merge `override` into the params file in place, keeping its comments and key order."""
    from ruamel.yaml import YAML

    from kinship.io import atomic_file

    rt = YAML()  # round-trip mode: comments survive
    with params_path.open() as fh:
        document = rt.load(fh)
    _update_in_place(document, override)
    with atomic_file(params_path) as fh:
        rt.dump(document, fh)


def _update_in_place(document: dict, override: dict, path: str = "") -> None:
    for key, value in override.items():
        if value is None and path in REMOVABLE_SECTIONS:
            document.pop(key, None)
        elif isinstance(value, dict) and isinstance(document.get(key), dict):
            _update_in_place(document[key], value, key if not path else f"{path}.{key}")
        else:
            document[key] = value
