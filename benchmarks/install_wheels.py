"""Install, into a folder of their own, the carried wheels a bare GPU machine lacks.

    python3 benchmarks/install_wheels.py benchmarks/wheels /tmp/site   (then PYTHONPATH=/tmp/site)

Offline and minimal: a wheel is installed only when its distribution is missing, or present at
another version (the versions in the folder are those the project pins and tests) — never over
what the machine has right. torchvision is the exception: its compiled ops must match torch
exactly, so its wheel goes in only when torchvision is missing and the machine's torch is the one
the wheel was built for; otherwise FaceNet (facenet-pytorch imports torchvision) is left out and the
benchmark says why. `pip install --no-index --no-deps --target`, or, where the interpreter has no
pip, the wheel unpacked as pip would (purelib and platlib at the top of the target).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

TORCH_PIN = re.compile(r"^Requires-Dist: torch ?\(?==([\w.]+)\)?", re.MULTILINE)


def wheel_name_version(wheel: Path) -> tuple[str, str]:
    """Distribution name (normalised) and version from a wheel's file name."""
    name, version = wheel.name.split("-")[:2]
    return name.lower().replace("-", "_"), version


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_pin(wheel: Path) -> str | None:
    """The exact torch version a wheel requires (torchvision pins one), or None."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        match = TORCH_PIN.search(archive.read(metadata).decode())
    return match.group(1) if match else None


def decide(wheel: Path) -> tuple[bool, str]:
    """Whether to install `wheel`, and why (one line for the log)."""
    name, version = wheel_name_version(wheel)
    have = installed_version(name)
    if name == "torchvision":
        if have is not None:
            return False, f"torchvision {have} present"
        torch = installed_version("torch")
        pin = torch_pin(wheel)
        if torch is None or pin is None or torch.split("+")[0] != pin:
            return False, (
                f"torchvision missing, but {wheel.name} needs torch {pin} and this machine has "
                f"torch {torch}: FaceNet will be skipped"
            )
        return True, f"torchvision missing (torch {torch} matches)"
    if have == version:
        return False, f"{name} {have} present"
    return True, f"{name} {have or 'missing'} -> {version}"


def install(wheels: list[Path], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    has_pip = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True
    ).returncode
    if has_pip == 0:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
        subprocess.run([*cmd, "--target", str(target), *map(str, wheels)], check=True)
        return
    for wheel in wheels:  # no pip: a wheel is a zip laid out for site-packages
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="the folder of carried wheels")
    parser.add_argument("target", type=Path, help="where to install (put it on PYTHONPATH)")
    args = parser.parse_args(argv)
    found = sorted(args.wheels.glob("*.whl"))
    if not found:
        print(
            f"install_wheels: no wheels in {args.wheels} (run benchmarks/gpu_wheels.sh where "
            "PyPI is reachable, then carry the folder)",
            file=sys.stderr,
        )
        return 2
    chosen = []
    for wheel in found:
        take, why = decide(wheel)
        print(f"  {'install' if take else 'keep   '} {why}")
        if take:
            chosen.append(wheel)
    if chosen:
        install(chosen, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
