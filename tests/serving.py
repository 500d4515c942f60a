"""Run `tokentrail serve` as a real subprocess on a free loopback port, for e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tokentrail.collector.ingest_queue import IngestQueue
    from tokentrail.collector.pipeline import IngestPipeline

# The conftest fixture ``queue_for``: a started ingest queue over a pipeline.
QueueFor = Callable[["IngestPipeline"], "IngestQueue"]

READY_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(keys: str = "") -> dict[str, str]:
    """The environment for a CLI subprocess: embedded store, the given keys only."""
    # gRPC off unless a test asks for it: the default :4317 would clash between servers.
    env = {**os.environ, "TOKENTRAIL_API_KEYS": keys, "TOKENTRAIL_GRPC_PORT": "0"}
    env.pop("TOKENTRAIL_CLICKHOUSE_URL", None)
    return env


@contextmanager
def serving(data_dir: Path, *args: str, keys: str = "", grpc_port: int = 0) -> Iterator[str]:
    """Yield the base URL of a ready server; its output goes to ``serve.log`` beside the data.

    ``grpc_port`` turns OTLP/gRPC on at that port (off by default).
    """
    with serve_process(data_dir, *args, keys=keys, grpc_port=grpc_port) as (_, base):
        yield base


@contextmanager
def serve_process(
    data_dir: Path, *args: str, keys: str = "", grpc_port: int = 0, command: str = "serve"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """As ``serving``, but also yield the process, for tests that kill it themselves.

    ``command`` runs ``tokentrail collector`` instead, with the same options.
    """
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokentrail.cli", command, "--port", str(port),
             "--grpc-port", str(grpc_port), "--data-dir", str(data_dir), *args],
            env=cli_env(keys), stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            yield process, _wait_ready(process, f"http://127.0.0.1:{port}", log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_ready(process: subprocess.Popen[str], base: str, log_path: Path) -> str:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve was not ready within {READY_SECONDS} s:\n{log_path.read_text()}")


def get(base: str, path: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{base}{path}", params=params, headers=headers, timeout=10)


@contextmanager
def serving_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve a plain ``http.server`` handler on a free loopback port; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app in this process on a free loopback port; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
