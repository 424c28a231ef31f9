"""benchmarks/bench_gpu.py, the one-command GPU check, cannot rot: its `--smoke` mode runs every
phase (synthetic data, model alone, data path, torch reference, a training run, the report) on
the CPU in a subprocess on Keras' torch backend, without ever importing TensorFlow; without a GPU
and without `--smoke`/`--cpu` it refuses, saying why."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_gpu.py"


def run_bench(*args: str, backend: str = "torch", cwd: Path | None = None):
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "CUDA_VISIBLE_DEVICES": "",  # the CPU, even on a machine with a GPU
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_smoke_runs_every_phase_on_the_cpu_without_tensorflow(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_bench("--smoke", "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    loaded = results["modules_loaded"]
    assert loaded["tensorflow"] is False, "the benchmark process imported TensorFlow"
    assert loaded["torch"] and loaded["keras"]
    assert results["environment"]["keras_backend"] == "torch"
    assert results["environment"]["cuda"] is False
    rows = {row["member"]: row for row in results["throughput"]}
    assert set(rows) == {"vggface_resnet50", "facenet"}
    for row in rows.values():
        for phase in ("model_alone", "data_path"):
            assert row[phase]["img_per_s"] > 0 and math.isfinite(row[phase]["loss"])
        assert row["data_path"]["producer_ms"] > 0  # the probe saw the prefetch thread work
        assert row["ratio"] > 0 and row["limits"]
    assert results["reference"].get("img_per_s", 0) > 0 or "skipped" in results["reference"]
    assert {v["status"] for v in results["verdicts"]} == {"n/a"}  # no GPU targets on a CPU
    training = results["training"]
    assert len(training["epochs"]) >= 2
    for epoch in training["epochs"]:
        assert math.isfinite(epoch["loss"]) and 0 <= epoch["inner_auc"] <= 1
    assert 0 <= training["validation_auc"] <= 1
    for heading in ("1. throughput", "2. training run", "3. what limits each number"):
        assert heading in proc.stdout


def test_refuses_without_a_gpu_unless_smoke_or_cpu():
    proc = run_bench()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no CUDA device" in proc.stderr and "--smoke" in proc.stderr
    assert "1. throughput" not in proc.stdout  # refused before any work


def test_refuses_another_keras_backend():
    proc = run_bench("--smoke", backend="tensorflow")
    assert proc.returncode == 2
    assert "KERAS_BACKEND=tensorflow" in proc.stderr


# -- the GPU-only parts of the report, on made-up numbers (no GPU here) -------------------------


def load_benchmark_module(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def gpu_row(member: str, size: int, alone: float, path: float, busy: float, producer: float):
    step = 64 / alone * 1000
    return {
        "member": member, "size": size, "width": 1.0, "card_gib": 79.1,
        "model_alone": {"img_per_s": alone, "step_ms": step, "host_ms": step * 0.3, "loss": 0.7},
        "data_path": {
            "img_per_s": path, "step_ms": 64 / path * 1000, "loss": 0.7, "sample_ms": producer / 2,
            "gather_ms": producer / 4, "upload_ms": producer / 4, "producer_ms": producer,
            "step_host_ms": step * 0.3, "wait_ms": 64 / path * 1000 - step * 0.3,
        },
        "ratio": path / alone,
        "busy_model_alone": {"busy": busy, "note": ""},
        "busy_data_path": {"busy": busy * path / alone, "note": ""},
        "memory": {"peak_gib": 9.5, "reserved_gib": 11.0},
    }  # fmt: skip


def test_report_judges_gpu_numbers_against_the_targets():
    report = load_benchmark_module("gpu_report")
    rows = [
        gpu_row("vggface_resnet50", 224, alone=2400, path=2300, busy=0.97, producer=9.0),
        gpu_row("facenet", 160, alone=3000, path=1500, busy=0.6, producer=40.0),
    ]
    env = {"cuda": True, "device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu128",
           "cuda_version": "12.8", "cudnn": 91000, "keras": "3.15.1", "keras_backend": "torch",
           "python": "3.12.3", "cores": 16, "card_gib": 79.1}  # fmt: skip
    epochs = [
        {"epoch": e, "loss": 0.7 - 0.05 * e, "inner_auc": 0.55 + 0.05 * e, "lr": 1e-3,
         "img_per_s": 2000.0} for e in range(3)
    ]  # fmt: skip
    results = {
        "mode": "gpu", "environment": env, "throughput": rows, "seconds": 300.0,
        "settings": {"precision": "bf16", "batch_size": 64},
        "data": {"families": 300, "train_images": 7000, "relationships": 1900, "sizes": [160, 224],
                 "total_seconds": 20.0, "processes": 16},
        "reference": {"size": 224, "img_per_s": 3100.0, "step_ms": 20.6},
        "training": {"member": "vggface_resnet50", "size": 224, "width": 1.0, "fold": 0,
                     "batch_size": 64, "steps_per_epoch": 75, "inner_pairs": 400, "epochs": epochs,
                     "best_epoch": 2, "best_inner_auc": 0.65, "validation_auc": 0.63,
                     "validation_pairs": 900, "memory": {"peak_gib": 9.0, "reserved_gib": 10.0}},
    }  # fmt: skip
    for row in rows:
        row["limits"] = report.limits(row, on_gpu=True)
    results["verdicts"] = report.verdicts(results)
    status = {v["what"]: v["status"] for v in results["verdicts"]}
    assert status == {
        "vggface_resnet50@224 model alone": "PASS",
        "vggface_resnet50@224 data path / model alone": "PASS",
        "facenet@160 data path / model alone": "FAIL",
    }
    assert "compute, the GPU is busy 97%" in rows[0]["limits"][0]
    assert "the host, the GPU idles 40%" in rows[1]["limits"][0]
    assert "data, the prefetch thread needs 40.0 ms" in rows[1]["limits"][1]
    text = report.render(results)
    assert "FAIL  facenet@160" in text and "PASS  vggface_resnet50@224 model alone" in text
    assert "inner AUC first 0.5500 -> best 0.6500 (epoch 2); rising" in text
    assert "peak 9.5 GiB allocated" in text


def test_gpu_busy_counts_overlapping_intervals_once():
    timing = load_benchmark_module("gpu_timing")
    assert timing.union_length([(0, 10), (5, 12), (20, 25), (21, 22), (30, 30.5)]) == 17.5
    assert timing.union_length([]) == 0.0


def test_carried_wheels_are_the_versions_the_project_pins():
    """gpu_wheels.sh downloads what pyproject.toml (and the Makefile, for facenet-pytorch) pin."""
    script = (REPO / "benchmarks" / "gpu_wheels.sh").read_text()
    pinned = (REPO / "pyproject.toml").read_text() + (REPO / "Makefile").read_text()
    for package in ("keras", "tqdm", "facenet-pytorch"):
        wanted = re.search(rf"^\s+{package}==([\w.]+)", script, re.MULTILINE)
        assert wanted, f"gpu_wheels.sh downloads no pinned {package}"
        assert f"{package}=={wanted.group(1)}" in pinned, f"{package}: another pin"
