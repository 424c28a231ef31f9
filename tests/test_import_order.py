"""Every import order our processes produce must work.

TensorFlow first, then anything that loads torch._dynamo/triton (torchvision.ops, torch.compile),
segfaults in one process (both bundle LLVM). Our processes avoid it by construction: each train
stage loads one member's framework, the other stages none, and test processes load torch first.
Each check runs in a fresh subprocess so a crash is a failed test, not a dead test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def test_torch_first_then_tensorflow_works():
    proc = _run(
        """
        import torch, torchvision.ops, torch._dynamo
        import tensorflow as tf
        print(int(tf.reduce_sum(tf.ones(3))), torch.ones(2).sum().item())
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 2.0" in proc.stdout


@pytest.mark.parametrize("model", ["facenet", "siamese_cnn"])
def test_torch_member_process_never_loads_tensorflow(model):
    proc = _run(
        f"""
        import sys
        import numpy as np
        import dvclive
        from kinship.members.registry import create_member
        from kinship.members.params import MemberParams
        from kinship import training, train_stage, metrics
        m = create_member("m", MemberParams(model={model!r}, input_size=80, batch_size=2))
        m.build(); m.reset(0)
        x = np.zeros((2, 80, 80, 3), np.uint8)
        m.train_step(x, np.array([[1], [0]], np.int32), np.array([[1], [0]], np.float32))
        print("tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["False", "False"]
