"""The GPU benchmark's verdicts and printed tables (plain text, from the results dict alone)."""

from __future__ import annotations

TARGET_IMG_S = 2000.0
"""ResNet50 at 224 px, model alone, bf16 + channels-last, on one H100 (issue 14)."""
TARGET_RATIO = 0.90
"""The data path's throughput over the model alone's, every member."""
BUSY_ENOUGH = 0.90
"""A step whose GPU is busy at least this share of its wall time is compute-bound."""


def verdicts(results: dict) -> list[dict]:
    """PASS/FAIL against the targets; `n/a` where they do not apply (CPU runs, small inputs)."""
    on_gpu = results["environment"]["cuda"]
    out = []
    for row in results["throughput"]:
        if "skipped" in row:
            continue
        label = f"{row['member']}@{row['size']}"
        a, ratio = row["model_alone"]["img_per_s"], row["ratio"]
        if row["member"] == "vggface_resnet50":
            full = on_gpu and row["size"] == 224 and row["width"] == 1.0
            out.append(_verdict(f"{label} model alone", a, TARGET_IMG_S, "img/s", full))
        out.append(_verdict(f"{label} data path / model alone", ratio, TARGET_RATIO, "", on_gpu))
    return out


def _verdict(what: str, value: float, target: float, unit: str, applies: bool) -> dict:
    status = ("PASS" if value >= target else "FAIL") if applies else "n/a"
    return {"what": what, "value": value, "target": target, "unit": unit, "status": status}


def limits(row: dict, on_gpu: bool) -> list[str]:
    """What holds each number back: compute, the host, the data path, memory."""
    a, b = row["model_alone"], row["data_path"]
    lines = []
    busy_a, busy_b = row["busy_model_alone"]["busy"], row["busy_data_path"]["busy"]
    if not on_gpu:
        lines.append("model alone: CPU compute (no GPU in this run)")
    elif busy_a is None:
        lines.append(f"model alone: GPU busy unknown ({row['busy_model_alone']['note']})")
    elif busy_a >= BUSY_ENOUGH:
        lines.append(f"model alone: compute, the GPU is busy {busy_a:.0%} of each step")
    else:
        lines.append(
            f"model alone: the host, the GPU idles {1 - busy_a:.0%} of each step (Python "
            f"dispatch and kernel launches: the loop takes {a['host_ms']:.1f} ms of the "
            f"{a['step_ms']:.1f} ms step before it waits)"
        )
    producer, step = b["producer_ms"], a["step_ms"]
    parts = " + ".join(f"{key} {b[key + '_ms']:.1f}" for key in ("sample", "gather", "upload"))
    if producer > step:
        lines.append(
            f"data path: data, the prefetch thread needs {producer:.1f} ms a batch ({parts}) "
            f"against a {step:.1f} ms step"
        )
    elif row["ratio"] < TARGET_RATIO:
        lines.append(
            f"data path: contention, the thread keeps up ({producer:.1f} ms: {parts}) but a step "
            f"call takes {b['step_host_ms']:.1f} ms of host time against {a['host_ms']:.1f} ms "
            f"alone, and the loop waits {b['wait_ms']:.1f} ms a step for batches (one GIL for "
            "the thread and the step's dispatch)"
        )
    else:
        lines.append(f"data path: not the limit, the thread needs {producer:.1f} ms ({parts})")
    if busy_b is not None:
        lines.append(f"data path: GPU busy {busy_b:.0%} of the wall time")
    memory = row["memory"]
    if memory["peak_gib"] is not None:
        total = row.get("card_gib")
        of = f" of {total:.0f} GiB" if total else ""
        lines.append(
            f"memory: peak {memory['peak_gib']:.1f} GiB allocated, "
            f"{memory['reserved_gib']:.1f} GiB reserved{of}"
        )
    return lines


def render(results: dict) -> str:
    """The whole report as text."""
    env, data = results["environment"], results["data"]
    lines = [
        f"Kinship GPU benchmark ({results['mode']}): {env['device']}",
        f"torch {env['torch']} (CUDA {env['cuda_version']}, cuDNN {env['cudnn']}), keras "
        f"{env['keras']} on {env['keras_backend']}, python {env['python']}, {env['cores']} cores",
        f"precision: {results['settings']['precision']}; batch {results['settings']['batch_size']}",
        f"data: {data['families']} synthetic families, {data['train_images']} training images, "
        f"{data['relationships']} relationships, cached at {data['sizes']} px, made in "
        f"{data['total_seconds']:.0f} s ({data['processes']} processes)",
        "",
        "1. throughput, images/s (forward + backward + Adam)",
    ]
    header = (
        f"{'member':<22}{'px':>5}{'model alone':>13}{'data path':>11}{'ratio':>7}"
        f"{'busy a/b':>11}{'producer':>10}{'step':>8}{'peak GiB':>10}"
    )
    lines += [header, "-" * len(header)]
    for row in results["throughput"]:
        lines.append(_throughput_line(row))
    ref = results.get("reference")
    if ref:
        if "skipped" in ref:
            lines.append(f"{'torch resnet50 (ref)':<22} skipped: {ref['skipped']}")
        else:
            lines.append(
                f"{'torch resnet50 (ref)':<22}{ref['size']:>5}{ref['img_per_s']:>13,.0f}"
                f"{'':>11}{'':>7}{'':>11}{'':>10}{ref['step_ms']:>8.1f}"
            )
    lines.append("   producer: prefetch thread ms a batch; step: model alone ms a step")
    lines += ["", "targets"]
    for v in results["verdicts"]:
        value = f"{v['value']:,.0f} {v['unit']}" if v["unit"] else f"{v['value']:.2f}"
        target = f"{v['target']:,.0f} {v['unit']}" if v["unit"] else f"{v['target']:.2f}"
        lines.append(f"  {v['status']:<5} {v['what']}: {value} (target >= {target})")
    lines += ["", "2. training run"] + _training_lines(results.get("training"))
    lines += ["", "3. what limits each number"]
    for row in results["throughput"]:
        if "skipped" not in row:
            lines += [f"  {row['member']}@{row['size']}:"]
            lines += [f"    {line}" for line in row["limits"]]
    lines.append(f"\ntotal {results['seconds']:.0f} s")
    return "\n".join(lines)


def _throughput_line(row: dict) -> str:
    name = f"{row['member']}" + (f" w{row['width']:g}" if row["width"] != 1.0 else "")
    if "skipped" in row:
        return f"{name:<22}{row['size']:>5}  skipped: {row['skipped']}"
    a, b = row["model_alone"], row["data_path"]
    busy = "/".join(
        "-" if x["busy"] is None else f"{x['busy']:.0%}"
        for x in (row["busy_model_alone"], row["busy_data_path"])
    )
    peak = row["memory"]["peak_gib"]
    return (
        f"{name:<22}{row['size']:>5}{a['img_per_s']:>13,.0f}{b['img_per_s']:>11,.0f}"
        f"{row['ratio']:>7.2f}{busy:>11}{b['producer_ms']:>10.1f}{a['step_ms']:>8.1f}"
        f"{'-' if peak is None else f'{peak:.1f}':>10}"
    )


def _training_lines(training: dict | None) -> list[str]:
    if not training:
        return ["  not run"]
    if "skipped" in training:
        return [f"  skipped: {training['skipped']}"]
    lines = [
        f"  {training['member']}@{training['size']} width {training['width']:g}, random init, "
        f"fold {training['fold']}: {training['steps_per_epoch']} steps of "
        f"{training['batch_size']} a epoch, inner check {training['inner_pairs']} pairs"
    ]
    for r in training["epochs"]:
        lines.append(
            f"  epoch {r['epoch']:>2}: loss {r['loss']:.4f}, inner AUC {r['inner_auc']:.4f}, "
            f"lr {r['lr']:.1e}, {r['img_per_s']:,.0f} img/s"
        )
    first, best = training["epochs"][0]["inner_auc"], training["best_inner_auc"]
    lines.append(
        f"  inner AUC first {first:.4f} -> best {best:.4f} (epoch {training['best_epoch']}); "
        f"{'rising' if best > first else 'NOT rising'}; fold {training['fold']} validation AUC "
        f"{training['validation_auc']:.4f} on {training['validation_pairs']} pairs; peak "
        f"{_gib(training['memory']['peak_gib'])}"
    )
    return lines


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} GiB"
