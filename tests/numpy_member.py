"""A tiny member in plain numpy, for testing the framework-free trainer fast.

Embedding: a learned linear map of 4×4-pooled colour; head: logistic regression on (e1−e2)².
Gradients are written out by hand. Not a registered member: tests register it with monkeypatch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from kinship.members.base import CONFIG_FILE, Member

GRID, DIM = 4, 8


class NumpyMember(Member):
    framework = "numpy"

    def preprocess(self, images):
        n, s = images.shape[0], images.shape[1]
        x = images.astype(np.float32) / 255 - 0.5
        x = x.reshape(n, GRID, s // GRID, GRID, s // GRID, 3).mean(axis=(2, 4))
        return x.reshape(n, -1)

    def build(self):
        self.embedded_rows_log = []  # every batch of images embedded, for tests to inspect
        self.reset(0)

    def reset(self, seed):
        rng = np.random.default_rng(seed)
        self.state = {
            "A": rng.normal(0, 0.3, size=(GRID * GRID * 3, DIM)),
            "w": np.zeros(DIM),
            "b": np.zeros(1),
        }
        self.lr = self.params.lr

    def _forward(self, x1, x2):
        d = x1 - x2
        z = d @ self.state["A"]
        f = z**2
        logit = f @ self.state["w"] + self.state["b"][0]
        return d, z, f, 1 / (1 + np.exp(-logit))

    def train_step(self, images, partners, labels):
        x = self.preprocess(images)
        d, z, f, p = self._forward(*_pairs(x, partners))
        y = np.asarray(labels).reshape(-1)
        g = (p - y) / len(y)
        grad_w, grad_b = f.T @ g, g.sum()
        grad_a = d.T @ (g[:, None] * self.state["w"] * 2 * z)
        self.state["A"] -= self.lr * grad_a
        self.state["w"] -= self.lr * grad_w
        self.state["b"] -= self.lr * grad_b
        return float(-np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7)))

    def train_head_step(self, embeddings, partners, labels):
        e1, e2 = _pairs(embeddings, partners)
        y = np.asarray(labels).reshape(-1)
        f = (e1 - e2) ** 2
        p = 1 / (1 + np.exp(-(f @ self.state["w"] + self.state["b"][0])))
        g = (p - y) / len(y)
        self.state["w"] -= self.lr * (f.T @ g)
        self.state["b"] -= self.lr * g.sum()
        return float(np.mean((p - y) ** 2))

    def set_learning_rate(self, lr):
        self.lr = lr

    def get_learning_rate(self):
        return self.lr

    def embed(self, images):
        self.embedded_rows_log.append(images.shape[0])
        return (self.preprocess(images) @ self.state["A"]).astype(np.float32)

    def score(self, e1, e2):
        f = (e1 - e2) ** 2
        return (1 / (1 + np.exp(-(f @ self.state["w"] + self.state["b"][0])))).astype(np.float32)

    def get_state(self):
        return copy.deepcopy(self.state)

    def set_state(self, state):
        self.state = copy.deepcopy(state)

    def save(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "weights.npz", **self.state)
        (directory / CONFIG_FILE).write_text(json.dumps(self.member_config()))

    def load(self, directory: Path):
        with np.load(directory / "weights.npz") as data:
            self.state = {k: data[k] for k in data.files}

    def save_training_state(self, directory: Path):
        self.save(directory)
        (directory / "optimizer.json").write_text(json.dumps({"lr": self.lr}))

    def load_training_state(self, directory: Path):
        self.load(directory)
        self.lr = json.loads((directory / "optimizer.json").read_text())["lr"]


def _pairs(x, partners):
    """Rows of a group batch → the two sides of its B·M pairs."""
    anchors = np.repeat(np.arange(len(x)), partners.shape[1])
    return x[anchors], x[np.asarray(partners).reshape(-1)]
