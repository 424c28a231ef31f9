"""One command on a GPU machine: is the device data path as fast as the model, and does it learn?

On synthetic FIW-like data made here (no DVC, no network; `gpu_data`):
  1. images/s of the training step (forward + backward + Adam, bf16 autocast + channels-last) of
     the VGGFace ResNet50 member (Keras on the torch backend) at 224 px and of FaceNet (torch) at
     160 px: (a) the model alone on a batch already on the device, (b) the trainer's data path
     (`kinship.training._device_epoch`), and (b)/(a); torchvision's ResNet50 as a plain-torch
     reference. Targets: ResNet50@224 >= 2,000 img/s on an H100; (b)/(a) >= 0.90.
  2. one fold of a random-init ResNet50@224 through `kinship.training.fit` (split_fold,
     GroupSampler, Embedder, the inner check): each epoch's loss and inner AUC.
  3. what limits each number (GPU busy share, producer vs step time, peak memory).
Prints the results as one JSON line, then the table; `--json PATH` writes them too. Exit status:
0 every target met (or a smoke/CPU run completed), 1 a target missed, 2 refused (no CUDA device,
or a Keras backend other than torch). `--smoke`: tiny sizes on the CPU in about a minute
(tests/test_bench_gpu.py); `--cpu`: the full sizes without a GPU (slow). On a bare GPU machine
run it through benchmarks/gpu_check.sh (docs/gpu-benchmark.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from gpu_data import cores, make_data  # noqa: E402
from gpu_phases import SEED, fold_split, reference, throughput, training_run  # noqa: E402
from gpu_report import render, verdicts  # noqa: E402


@dataclass(frozen=True)
class Settings:
    families: int
    folds: int
    batch_size: int
    mixed_precision: bool
    members: tuple[tuple[str, int, float], ...]  # (model, input size, width) for throughput
    warmup_steps: int
    timed_steps: int
    profiled_steps: int  # steps under torch.profiler for the GPU-busy share (GPU only)
    reference_size: int | None  # torchvision ResNet50's input size; None: no reference
    train: tuple[str, int, float]  # (model, input size, width) of the training run
    train_steps: int | str  # steps per epoch, or "auto" (the trainer's)
    train_epochs: int  # the most epochs; fewer when the budget is short
    train_seconds: float  # the training run's share of the budget
    budget: float  # seconds for the whole run


FULL = Settings(
    families=300,
    folds=5,
    batch_size=64,
    mixed_precision=True,
    members=(("vggface_resnet50", 224, 1.0), ("facenet", 160, 1.0)),
    warmup_steps=15,
    timed_steps=100,
    profiled_steps=10,
    reference_size=224,
    train=("vggface_resnet50", 224, 1.0),
    train_steps="auto",
    train_epochs=30,
    train_seconds=180.0,
    budget=480.0,
)
SMOKE = Settings(
    families=16,
    folds=3,
    batch_size=8,
    mixed_precision=False,
    members=(("vggface_resnet50", 64, 0.25), ("facenet", 80, 1.0)),
    warmup_steps=1,
    timed_steps=2,
    profiled_steps=1,
    reference_size=64,
    train=("vggface_resnet50", 64, 0.25),
    train_steps=4,
    train_epochs=2,
    train_seconds=60.0,
    budget=120.0,
)
REFUSAL = (
    "bench_gpu: no CUDA device visible to torch ({why}). This benchmark measures a GPU; run "
    "`--smoke` (tiny, CPU) to check the script, or `--cpu` to run the full sizes on the CPU."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, float32, about a minute")
    mode.add_argument("--cpu", action="store_true", help="the full sizes without a GPU (slow)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--budget", type=float, help="wall-clock seconds for the whole run")
    parser.add_argument("--families", type=int, help="synthetic families (default: the mode's)")
    parser.add_argument("--batch-size", type=int, help="images a step (default: the mode's)")
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    s = SMOKE if args.smoke else FULL
    overrides = {
        key: value
        for key, value in (
            ("budget", args.budget),
            ("families", args.families),
            ("batch_size", args.batch_size),
        )
        if value is not None
    }
    return dataclasses.replace(s, **overrides)


def cuda_check() -> tuple[bool, str]:
    """Whether torch sees a CUDA device, asked in a child process: this one must not touch the
    GPU before the cache forks its decoding processes."""
    probe = "import torch as t; print(int(t.cuda.is_available()), t.__version__, t.version.cuda)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"torch does not import: {last}"
    ok, version, cuda = proc.stdout.split()
    return ok == "1", f"torch {version}, built for CUDA {cuda}"


def environment() -> dict:
    import keras
    import torch

    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    return {
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU: {cpu_name()}",
        "card_gib": props.total_memory / 2**30 if props else None,
        "torch": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "keras": keras.__version__,
        "keras_backend": keras.config.backend(),
        "python": platform.python_version(),
        "cores": cores(),
    }


def cpu_name() -> str:
    """The CPU model (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run(s: Settings, mode: str, workdir: Path) -> dict:
    start = time.perf_counter()
    sizes = [size for _, size, _ in s.members] + [s.train[1]]
    data = make_data(workdir, s.families, sizes, s.folds, SEED)
    print(f"data: {data.summary}", flush=True)
    env = environment()  # torch's first touch of the GPU: after the cache's forks
    print(
        f"device: {env['device']}, torch {env['torch']}, CUDA {env['cuda_version']}; "
        f"{time.perf_counter() - start:.0f} s in",
        flush=True,
    )
    split = fold_split(data.prepared)
    rows = [throughput(*m, s, data, split, env) for m in s.members]
    results = {
        "mode": mode,
        "environment": env,
        "settings": dataclasses.asdict(s) | {"precision": precision(s, env)},
        "data": data.summary,
        "throughput": rows,
    }
    if s.reference_size:
        results["reference"] = reference(s)
    speeds = {
        (r["member"], r["size"], r["width"]): r["data_path"]["img_per_s"]
        for r in rows
        if "skipped" not in r
    }
    left = s.budget - (time.perf_counter() - start) - 30  # room for the report
    seconds = min(s.train_seconds, left)
    if seconds > 10:
        print(f"training run: {seconds:.0f} s budget", flush=True)
        results["training"] = training_run(s, data, split, seconds, speeds)
    else:
        results["training"] = {"skipped": f"{left:.0f} s left of the {s.budget:.0f} s budget"}
    return finish(results, start)


def precision(s: Settings, env: dict) -> str:
    if s.mixed_precision and env["cuda"]:
        return "bf16 autocast (Keras: mixed_bfloat16) + channels-last"
    return "float32 (mixed precision needs CUDA)" if s.mixed_precision else "float32"


def finish(results: dict, start: float) -> dict:
    from gpu_report import limits

    for row in results["throughput"]:
        if "skipped" not in row:
            row["limits"] = limits(row, results["environment"]["cuda"])
    results["verdicts"] = verdicts(results)
    loaded = ("tensorflow", "torch", "keras", "torch._dynamo")
    results["modules_loaded"] = {name: name in sys.modules for name in loaded}
    results["seconds"] = time.perf_counter() - start
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    backend = os.environ.setdefault("KERAS_BACKEND", "torch")
    if backend != "torch":
        print(f"bench_gpu: KERAS_BACKEND={backend}; the data path needs torch", file=sys.stderr)
        return 2
    if not (args.smoke or args.cpu):
        ok, why = cuda_check()
        if not ok:
            print(REFUSAL.format(why=why), file=sys.stderr)
            return 2
    s = settings_for(args)
    mode = "smoke" if args.smoke else "cpu" if args.cpu else "gpu"
    with tempfile.TemporaryDirectory(prefix="kinship-bench-") as workdir:
        results = run(s, mode, Path(workdir))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    # the JSON on one line first, the table last (a tail of the output shows the table)
    print("\nJSON: " + json.dumps(results, default=float, separators=(",", ":")))
    print("\n" + render(results))
    failed = any(v["status"] == "FAIL" for v in results["verdicts"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
