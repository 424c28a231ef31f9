"""Latency, throughput and memory of `kinship serve` on loopback.

Starts `kinship serve` in a trained workspace (`--root`, default the current directory; or
measures a running server given by `--url`), warms it up, then for each concurrency level
(1, 4, 16) posts one real pair — scikit-image's astronaut and camera, as JPEG — from that many
client threads over keep-alive connections, bounded by `--requests` and `--max-seconds` per
level. Per level: requests, errors, p50 and p99 latency, throughput. Every answer must be 200 with
the same probability as the warm-up's (a different one counts as an error: requests must not
disturb each other). Then the soak: the server's resident memory (VmRSS of /proc/<pid>/status)
before and after `--soak` requests at concurrency 4. Ratios against the targets close the table
(p50 of one warm request at most 1 s, no errors, RSS growth at most 50 MiB). Exits 1 on any error.
The first line names the CPU: compare runs on the same one.

Run: `.venv/bin/python benchmarks/bench_serve.py --root .` after `make repro` (about 10 minutes on
2 cores with the demo models), or `--url http://127.0.0.1:8000 --pid PID` against a running one.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bench_demo import cpu_description
from PIL import Image

TARGET_P50_S = 1.0
TARGET_RSS_GROWTH_MIB = 50.0
BOUNDARY = "kinship-bench-3c1d"


def pair_body() -> bytes:
    """A multipart body with skimage's astronaut and camera (one face each) as JPEG."""
    import skimage.data

    camera = skimage.data.camera()
    images = {"photo1": skimage.data.astronaut(), "photo2": np.stack([camera] * 3, axis=-1)}
    parts = []
    for name, image in images.items():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=92)
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        )
        parts.append(head.encode() + buffer.getvalue() + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@dataclass
class Level:
    """One run of the load: latencies of the good answers, errors by kind, wall time."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def record(self, latency: float | None, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.latencies.append(latency)
            else:
                self.errors[error] = self.errors.get(error, 0) + 1

    def row(self, label: str | None = None) -> str:
        p50, p99 = np.percentile(self.latencies, [50, 99]) if self.latencies else (np.nan,) * 2
        rate = len(self.latencies) / self.seconds if self.seconds else 0.0
        return (
            f"{label or self.concurrency:>11} {self.requests:>8} {sum(self.errors.values()):>6} "
            f"{p50:>7.3f} {p99:>7.3f} {rate:>9.2f}"
        )


class Client:
    """One keep-alive connection that posts the pair and checks the answer."""

    def __init__(self, url: str, body: bytes, expected: float | None):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.body, self.expected = body, expected
        self.conn: http.client.HTTPConnection | None = None

    def post(self) -> tuple[float, float | None, str | None]:
        """(seconds, probability, error kind or None)."""
        start = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            self.conn.request(
                "POST",
                "/api/v1/predict",
                body=self.body,
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as err:
            self.close()
            return time.perf_counter() - start, None, type(err).__name__
        seconds = time.perf_counter() - start
        if response.status != 200:
            return seconds, None, f"HTTP {response.status}"
        probability = json.loads(payload)["probability"]
        if self.expected is not None and probability != self.expected:
            return seconds, probability, "different probability"
        return seconds, probability, None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def load(url: str, body: bytes, expected: float, concurrency: int, requests: int, limit: float):
    """`concurrency` threads posting until `requests` were sent or `limit` seconds passed."""
    level = Level(concurrency)
    sent = iter(range(requests))
    take = threading.Lock()
    deadline = time.perf_counter() + limit

    def worker():
        client = Client(url, body, expected)
        while time.perf_counter() < deadline:
            with take:
                if next(sent, None) is None:
                    break
            seconds, _, error = client.post()
            level.record(seconds, error)
        client.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.seconds = time.perf_counter() - start
    return level


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"/proc/{pid}/status: no VmRSS line")


@contextlib.contextmanager
def server(root: Path, threads: int, port: int, timeout: float):
    """`kinship serve` in `root`; yields (url, pid) once /healthz answers."""
    cmd = [sys.executable, "-m", "kinship.cli", "serve", "--port", str(port)]
    cmd += ["--threads", str(threads)]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:  # the server's log, shown if it fails to start
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        try:
            start = time.perf_counter()
            while not healthy(url):
                if proc.poll() is not None:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-4000:]
                    raise SystemExit(f"kinship serve exited {proc.returncode}:\n{output}")
                if time.perf_counter() - start > timeout:
                    raise SystemExit(f"kinship serve not healthy after {timeout:.0f} s")
                time.sleep(0.5)
            print(f"server: loaded and healthy in {time.perf_counter() - start:.1f} s", flush=True)
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(url: str, pid: int | None, args) -> int:
    body = pair_body()
    # 1. warm-up: the first requests pay for lazy initialisation; the first answer is the one
    #    every later request must give
    warm = Client(url, body, None)
    expected = None
    for _ in range(args.warmup):
        seconds, probability, error = warm.post()
        if error:
            print(f"warm-up failed: {error}")
            return 1
        expected = expected if expected is not None else probability
    warm.close()
    with urllib.request.urlopen(f"{url}/api/v1/info", timeout=10) as response:
        info = json.load(response)
    members = ", ".join(info["members"])
    print(f"models: {len(info['members'])} members ({members}), {info['ensemble']['method']}")
    print(f"pair: astronaut + camera (JPEG, {len(body) / 1024:.0f} KiB body), p = {expected:.6f}")
    # 2. the levels
    print(f"\n{'concurrency':>11} {'requests':>8} {'errors':>6} {'p50 s':>7} {'p99 s':>7} "
          f"{'req/s':>9}")  # fmt: skip
    levels = []
    for concurrency in args.levels:
        level = load(url, body, expected, concurrency, args.requests, args.max_seconds)
        levels.append(level)
        print(level.row(), flush=True)
    # 3. the soak
    before = rss_mib(pid) if pid else None
    soak = load(url, body, expected, 4, args.soak, args.soak_max_seconds)
    after = rss_mib(pid) if pid else None
    print(soak.row("soak at 4"))
    # 4. against the targets
    errors = sum(sum(level.errors.values()) for level in [*levels, soak])
    print()
    for level in [*levels, soak]:
        for kind, count in level.errors.items():
            print(f"errors at concurrency {level.concurrency}: {count} × {kind}")
    single = next((lv for lv in levels if lv.concurrency == 1 and lv.latencies), None)
    if single:
        p50 = float(np.percentile(single.latencies, 50))
        print(f"p50 of one warm request: {p50:.3f} s = {p50 / TARGET_P50_S:.2f} of the "
              f"{TARGET_P50_S:.0f} s target")  # fmt: skip
    print(f"errors: {errors} (target 0)")
    if before is None:
        print("RSS: not measured (give --pid with --url)")
    else:
        growth = after - before
        print(f"RSS: {before:.0f} MiB before, {after:.0f} MiB after {soak.requests} soak requests: "
              f"growth {growth:+.1f} MiB = {growth / TARGET_RSS_GROWTH_MIB:.2f} of the "
              f"{TARGET_RSS_GROWTH_MIB:.0f} MiB target")  # fmt: skip
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server (else one is started in --root)")
    parser.add_argument("--pid", type=int, help="the running server's process id (for its RSS)")
    parser.add_argument("--root", type=Path, default=Path("."), help="a trained workspace")
    parser.add_argument("--threads", type=int, default=4, help="server request threads")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="at most, per level")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="at most, per level")
    parser.add_argument("--warmup", type=int, default=3, help="requests before measuring")
    parser.add_argument("--soak", type=int, default=1000, help="requests of the memory check")
    parser.add_argument("--soak-max-seconds", type=float, default=300.0)
    parser.add_argument("--start-timeout", type=float, default=600.0)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", flush=True)
    if args.url:
        return measure(args.url.rstrip("/"), args.pid, args)
    root = args.root.resolve()
    with server(root, args.threads, free_port(), args.start_timeout) as (url, pid):
        print(f"server: {url} in {root}, pid {pid}, {args.threads} threads, "
              f"RSS {rss_mib(pid):.0f} MiB", flush=True)  # fmt: skip
        return measure(url, pid, args)


if __name__ == "__main__":
    sys.exit(main())
