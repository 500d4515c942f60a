"""End-to-end ingest throughput of `tokentrail serve`, against the decode-only ceiling.

Before the clock starts, builds LLM traces with the real OpenTelemetry SDK (a
root span naming feature, user and session, and one OTel GenAI chat span with
~15 attributes: a ~1 KB prompt, a ~300 B completion, usage) and encodes them
with the official OTLP encoder into distinct batches of 512 spans, the
BatchSpanProcessor's default. Every trace and span id is distinct, so nothing
de-duplicates.

Then starts `tokentrail serve` on the embedded store in a temporary directory
and replays every batch exactly once from ``--concurrency`` client threads over
kept-alive connections. A 429/503 is back-pressure: the client sleeps for its
Retry-After and re-sends the same batch, and the retries are counted. A 200 may
come before the rows are queryable (a spooling receiver acknowledges once the
batch is durable), so the clock stops only when the per-feature report of the
HTTP API counts every LLM call.

Figures: spans/s persisted and queryable, the server's CPU seconds (its
process and children, from /proc) per 1k spans and split by thread name (chDB
names its threads; Python's are named by ``py-spy dump`` when py-spy is
installed), its peak RSS; and, in the same
run, the ceiling: ``parse_traces_request`` + ``flatten`` alone over the same
batches in this process, with the server stopped. Per-span work past decoding
(normalize, price, write, settle rollups) is what the ratio leaves.

Goals (issue 5): >= 30,000 spans/s end to end, collector RSS < 400 MB.

Run: python bench/ingest.py [--spans 200000] [--concurrency 16] [--profile OUT]
     [--server-env TOKENTRAIL_QUEUE_MAX_ITEMS=4096 ...]
(``--profile`` attaches ``py-spy record --format raw`` to the server while the
batches are sent; py-spy must be installed.)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokentrail import semconv
from tokentrail.collector.decode import PROTOBUF, flatten, parse_traces_request

if TYPE_CHECKING:
    from typing_extensions import Self

BATCH_SPANS = 512  # the OTel SDK BatchSpanProcessor's max_export_batch_size
SPANS_PER_TRACE = 2
FEATURES = ("support-bot", "search", "summarize", "classify", "extract", "translate")
MODEL = "gpt-4o-mini"
GOAL_SPANS_PER_S = 30_000
GOAL_RSS_MB = 400

READY_SECONDS = 60
REQUEST_SECONDS = 60  # one POST, including a server busy writing a big block
MAX_RETRY_AFTER_S = 5.0
VISIBLE_SECONDS = 600  # sending plus waiting for the last rows to become queryable
POLL_SECONDS = 0.25
SETTLE_SECONDS = 3.0  # after the run, before reading the memory it keeps

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- traffic -----------------------------------------------------------------------


def _prompt(rng: random.Random) -> str:
    """A ~1 KB chat prompt in the gen_ai.input.messages shape."""
    question = " ".join(rng.choice(_WORDS) for _ in range(150))[:900]
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": "You are a support agent."}]},
        {"role": "user", "parts": [{"type": "text", "content": question}]},
    ]
    return json.dumps(messages)


def _completion(rng: random.Random) -> str:
    """A ~300 B answer in the gen_ai.output.messages shape."""
    answer = " ".join(rng.choice(_WORDS) for _ in range(50))[:230]
    part = {"type": "text", "content": answer}
    return json.dumps([{"role": "assistant", "parts": [part], "finish_reason": "stop"}])


_WORDS = (
    "order", "refund", "shipping", "account", "password", "invoice", "delivery", "the",
    "my", "was", "not", "please", "help", "when", "will", "arrive", "charged", "twice",
)  # fmt: skip


def _trace(tracer: trace.Tracer, rng: random.Random, start_ns: int, number: int) -> None:
    """One request: a root span with the feature context and one chat call under it."""
    feature = FEATURES[number % len(FEATURES)]
    root = tracer.start_span(
        "POST /chat",
        kind=trace.SpanKind.SERVER,
        start_time=start_ns,
        attributes={
            semconv.FEATURE: feature,
            semconv.USER_ID: f"user-{rng.randrange(5_000)}",
            semconv.SESSION_ID: f"session-{rng.randrange(20_000)}",
            "http.request.method": "POST",
            "http.route": "/chat",
        },
    )
    input_tokens, output_tokens = rng.randint(200, 400), rng.randint(40, 120)
    call_start = start_ns + 2_000_000
    call_end = call_start + rng.randint(300, 2_000) * 1_000_000
    call = tracer.start_span(
        f"chat {MODEL}",
        context=trace.set_span_in_context(root),
        kind=trace.SpanKind.CLIENT,
        start_time=call_start,
        attributes={
            semconv.OPERATION_NAME: "chat",
            semconv.PROVIDER_NAME: "openai",
            semconv.REQUEST_MODEL: MODEL,
            semconv.RESPONSE_MODEL: f"{MODEL}-2024-07-18",
            semconv.REQUEST_TEMPERATURE: 0.2,
            semconv.REQUEST_MAX_TOKENS: 256,
            semconv.SERVER_ADDRESS: "api.openai.com",
            semconv.SERVER_PORT: 443,
            semconv.RESPONSE_ID: f"chatcmpl-{number}",
            semconv.RESPONSE_FINISH_REASONS: ["stop"],
            semconv.INPUT_TOKENS: input_tokens,
            semconv.OUTPUT_TOKENS: output_tokens,
            semconv.CACHE_READ_TOKENS: rng.choice((0, 0, 128)),
            semconv.INPUT_MESSAGES: _prompt(rng),
            semconv.OUTPUT_MESSAGES: _completion(rng),
        },
    )
    call.end(end_time=call_end)
    root.end(end_time=call_end + 1_000_000)


@dataclass(frozen=True)
class Traffic:
    batches: list[bytes]
    spans: int
    calls: int
    start_ns: int
    end_ns: int


def build_traffic(spans: int, seed: int = 5) -> Traffic:
    """Encoded export requests of BATCH_SPANS spans, each trace whole in one batch."""
    rng = random.Random(seed)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "support-app", "deployment.environment.name": "production"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.ingest")
    traces = spans // SPANS_PER_TRACE
    per_batch = BATCH_SPANS // SPANS_PER_TRACE
    # The last ten minutes: inside the API's default 24 h window.
    end_ns = time.time_ns()
    start_ns = end_ns - 600 * 10**9
    step = (end_ns - start_ns - 5 * 10**9) // max(traces, 1)
    batches = []
    for first in range(0, traces, per_batch):
        for number in range(first, min(first + per_batch, traces)):
            _trace(tracer, rng, start_ns + number * step, number)
        batches.append(encode_spans(exporter.get_finished_spans()).SerializeToString())
        exporter.clear()
    provider.shutdown()
    return Traffic(batches, traces * SPANS_PER_TRACE, traces, start_ns, end_ns)


# --- the server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str, **params: str) -> tuple[int, bytes]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.port}{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_SECONDS) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def cpu_seconds(self) -> float:
        """utime + stime of the server and its descendants, the reaped ones included."""
        ticks = 0
        for pid in _process_tree(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended between the listing and the read
            # Fields 14-17 of proc(5): utime, stime, cutime, cstime (after pid and comm).
            ticks += sum(int(value) for value in fields[11:15])
        return ticks / _CLOCK_TICKS

    def memory_mb(self) -> dict[str, float]:
        """VmHWM (peak RSS), VmRSS and its parts RssAnon / RssFile, in MB, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) / 1024
        return fields


class _Sampler:
    """Calls ``sample`` every ``interval_s`` on a thread of its own, inside a ``with`` block.

    Sampling ends early when ``sample`` raises OSError or KeyError: the server ended.
    """

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sample()
            except (OSError, KeyError):
                return


class MemoryWatch(_Sampler):
    """Samples the server's memory while traffic runs, for the peak of each part.

    VmHWM counts pages of the chDB library mapped from disk (RssFile), which the
    kernel can drop and re-read; RssAnon is what ingest itself holds.
    """

    def __init__(self, server: Server, interval_s: float = 0.1) -> None:
        super().__init__(interval_s)
        self._server = server
        self.idle = server.memory_mb()
        self.peak_anon_mb = self.idle["RssAnon"]

    def sample(self) -> None:
        self.peak_anon_mb = max(self.peak_anon_mb, self._server.memory_mb()["RssAnon"])


class ThreadWatch(_Sampler):
    """Per-thread CPU of the server while traffic runs, summed by thread name.

    Samples /proc/<pid>/task/*/stat (utime + stime) every ``interval_s`` and
    charges what each thread spent since the last sample to the name it has
    now: chDB's pool threads rename themselves after the job they run (e.g.
    MergeMutate, QueryPipelineEx) and are "ThreadPool" while idle. A thread
    that ends keeps what it was last seen with. Python's threads are all
    "python" to the OS; :meth:`name_python_threads` names them.
    """

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        super().__init__(interval_s)
        self._pid = pid
        self._ticks: dict[int, int] = {}
        self._spent: dict[tuple[int, str], int] = {}  # (tid, name) -> ticks
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        for task in Path(f"/proc/{self._pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            tid = int(task.name)
            before = self._ticks.get(tid, ticks if first else 0)
            self._ticks[tid] = ticks
            if ticks > before:
                self._spent[tid, name] = self._spent.get((tid, name), 0) + ticks - before

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        self.sample()  # what was spent since the last tick

    def name_python_threads(self) -> None:
        """Name Python's threads (the OS sees them all as "python") from ``py-spy dump``."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        try:
            dump = subprocess.run(
                [spy, "dump", "-p", str(self._pid)], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return  # py-spy not installed: the OS names stay
        names = {
            int(tid): f"py:{name}"
            for tid, name in re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.M)
        }
        self._spent = {
            (tid, names.get(tid, name)): ticks for (tid, name), ticks in self._spent.items()
        }

    def by_name(self) -> dict[str, tuple[int, float]]:
        """Thread name -> (threads that spent CPU under it, CPU seconds during the watch)."""
        totals: dict[str, tuple[int, float]] = {}
        for (_, name), ticks in self._spent.items():
            count, seconds = totals.get(name, (0, 0.0))
            totals[name] = (count + 1, seconds + ticks / _CLOCK_TICKS)
        return totals


def _process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except OSError:
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


@contextmanager
def serving(scratch: Path, server_env: dict[str, str]) -> Iterator[Server]:
    port = _free_port()
    log = scratch / "serve.log"
    # Open (no keys): the loopback `default` project.
    env = {**os.environ, "TOKENTRAIL_API_KEYS": "", **server_env}
    env.pop("TOKENTRAIL_CLICKHOUSE_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokentrail.cli", "serve", "--port", str(port),
             "--grpc-port", "0", "--alert-interval", "0", "--data-dir", str(scratch / "data")],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        server = Server(process, port, log)
        try:
            _wait_ready(server)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"serve exited early:\n{server.log.read_text()}")
        try:
            if server.get("/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"serve not ready within {READY_SECONDS} s:\n{server.log.read_text()}")


# --- the client ----------------------------------------------------------------------


class Replay:
    """Sends every batch exactly once (re-sending only what back-pressure refused)."""

    def __init__(self, port: int, batches: list[bytes], deadline: float) -> None:
        self._port = port
        self._batches = iter(batches)
        self._deadline = deadline
        self._lock = threading.Lock()
        self.retries = 0  # 429/503 answers honoured
        self.reconnects = 0
        self.failure: str | None = None

    def _next(self) -> bytes | None:
        with self._lock:
            return None if self.failure else next(self._batches, None)

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def run(self) -> None:
        try:
            self._send_all()
        except Exception as exc:  # reported by the main thread, which stops the run
            with self._lock:
                self.failure = self.failure or f"{type(exc).__name__}: {exc}"

    def _send_all(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=REQUEST_SECONDS)
        try:
            while (body := self._next()) is not None:
                while not self._post(connection, body):
                    if time.monotonic() > self._deadline:
                        raise TimeoutError("batches still refused at the deadline")
        finally:
            connection.close()

    def _post(self, connection: http.client.HTTPConnection, body: bytes) -> bool:
        """True once the batch is accepted; False to send it again."""
        try:
            connection.request("POST", "/v1/traces", body, {"Content-Type": PROTOBUF})
            response = connection.getresponse()
            answer = response.read()
        except (ConnectionError, http.client.HTTPException):
            # A kept-alive connection the server closed: reconnect and re-send.
            connection.close()
            self._count("reconnects")
            return False
        if response.status in (429, 503):
            self._count("retries")
            time.sleep(_retry_after(response.getheader("Retry-After")))
            return False
        if response.status != 200:
            raise RuntimeError(f"POST /v1/traces answered {response.status}: {answer[:300]!r}")
        return True


def _retry_after(header: str | None) -> float:
    try:
        return min(max(float(header or 1), 0.05), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0  # an HTTP date: not worth parsing for a local server


def visible_calls(server: Server, traffic: Traffic) -> float:
    """LLM calls the per-feature report counts over the traffic's window."""
    window = {
        "start": _rfc3339(traffic.start_ns - 3600 * 10**9),
        "end": _rfc3339(traffic.end_ns + 3600 * 10**9),
    }
    status, body = server.get("/api/v1/features", **window)
    if status != 200:
        raise RuntimeError(f"GET /api/v1/features answered {status}: {body[:300]!r}")
    return float(sum(feature["calls"] for feature in json.loads(body)["features"]))


def _rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9))


# --- the run ---------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    sent_seconds: float
    cpu_seconds: float
    rss_mb: float  # peak RSS (VmHWM)
    idle_rss_mb: float  # RSS when ready, before traffic
    idle_anon_mb: float
    peak_anon_mb: float
    file_mb: float  # mapped from disk at the end (chDB's library, mostly)
    settled_anon_mb: float  # a few seconds after the last call became visible
    retries: int
    reconnects: int
    threads: dict[str, tuple[int, float]]  # thread name -> (threads, CPU seconds)


@contextmanager
def profiling(pid: int, out: str | None) -> Iterator[None]:
    """py-spy attached to the server (and its children) while the block runs."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "-o", out, "-f", "raw", "-p", str(pid), "--subprocesses", "--gil"]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach before traffic starts
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(timeout=10)


def end_to_end(
    traffic: Traffic, concurrency: int, profile: str | None, server_env: dict[str, str]
) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as scratch,
        serving(Path(scratch), server_env) as server,
    ):
        print(f"server pid {server.process.pid} on port {server.port}")
        with profiling(server.process.pid, profile):
            return _replay(server, traffic, concurrency)


def _replay(server: Server, traffic: Traffic, concurrency: int) -> Result:
    """Send every batch, then wait until the API counts every call; the clock covers both."""
    with MemoryWatch(server) as memory:
        return _replay_watched(server, traffic, concurrency, memory)


def _replay_watched(
    server: Server, traffic: Traffic, concurrency: int, memory: MemoryWatch
) -> Result:
    with ThreadWatch(server.process.pid) as threads:
        cpu_before = server.cpu_seconds()
        started = time.monotonic()
        deadline = started + VISIBLE_SECONDS
        replay = Replay(server.port, traffic.batches, deadline)
        clients = [threading.Thread(target=replay.run, daemon=True) for _ in range(concurrency)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(max(deadline - time.monotonic(), 0))
        sent = time.monotonic() - started
        if replay.failure or any(client.is_alive() for client in clients):
            log = server.log.read_text()[-3000:]
            raise SystemExit(f"sending failed: {replay.failure or 'timed out'}\n{log}")
        seen = visible_calls(server, traffic)
        while seen < traffic.calls:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {seen:,.0f} of {traffic.calls:,} calls visible")
            time.sleep(POLL_SECONDS)
            seen = visible_calls(server, traffic)
        elapsed = time.monotonic() - started
        cpu = server.cpu_seconds() - cpu_before
    threads.name_python_threads()
    if seen != traffic.calls:
        print(f"  WARNING: {seen:,.0f} calls visible for {traffic.calls:,} sent")
    time.sleep(SETTLE_SECONDS)
    now = server.memory_mb()
    return Result(
        elapsed, sent, cpu, now["VmHWM"], memory.idle["VmRSS"], memory.idle["RssAnon"],
        memory.peak_anon_mb, now["RssFile"], now["RssAnon"], replay.retries, replay.reconnects,
        threads.by_name(),
    )  # fmt: skip


def decode_ceiling(traffic: Traffic) -> float:
    """Seconds to parse and flatten every batch, in this process."""
    started = time.perf_counter()
    for body in traffic.batches:
        flatten(parse_traces_request(body, PROTOBUF))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    # Exports in flight at once, as from that many app instances. The collector
    # merges waiting exports into one write (TOKENTRAIL_QUEUE_BATCH_ITEMS, 8192
    # spans by default): 16 exports of 512 fill one.
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", metavar="OUT", help="py-spy raw profile of the server")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set for the server, e.g. TOKENTRAIL_QUEUE_MAX_ITEMS=4096 (repeatable)",
    )
    args = parser.parse_args()
    server_env = dict(item.split("=", 1) for item in args.server_env)

    began = time.perf_counter()
    traffic = build_traffic(args.spans)
    size = sum(map(len, traffic.batches))
    print(
        f"built {traffic.spans:,} spans ({traffic.calls:,} LLM calls) in "
        f"{len(traffic.batches)} batches of {BATCH_SPANS}, {size / 2**20:.0f} MiB encoded, "
        f"in {time.perf_counter() - began:.1f} s"
    )
    result = end_to_end(traffic, args.concurrency, args.profile, server_env)
    rate = traffic.spans / result.seconds
    ceiling_rate = traffic.spans / decode_ceiling(traffic)

    settings = "".join(f", {name}={value}" for name, value in server_env.items())
    print(f"\nend to end, {args.concurrency} client threads, embedded store{settings}")
    print(f"  spans sent           {traffic.spans:>12,}")
    print(f"  wall seconds         {result.seconds:>12.1f}  (all acknowledged at "
          f"{result.sent_seconds:.1f} s)")  # fmt: skip
    print(f"  persisted+queryable  {rate:>12,.0f} spans/s  (goal >= {GOAL_SPANS_PER_S:,})")
    print(f"  collector CPU        {result.cpu_seconds:>12.1f} s  "
          f"({result.cpu_seconds / traffic.spans * 1000 * 1000:.0f} ms per 1k spans)")  # fmt: skip
    print(f"  collector peak RSS   {result.rss_mb:>12,.0f} MB  (goal < {GOAL_RSS_MB}; "
          f"{result.idle_rss_mb:,.0f} MB idle before traffic)")  # fmt: skip
    print(f"    anonymous (heap)   {result.peak_anon_mb:>12,.0f} MB peak  "
          f"({result.idle_anon_mb:,.0f} MB idle; the rest of RSS is "
          f"{result.file_mb:,.0f} MB mapped from disk, chDB's library)")  # fmt: skip
    print(f"    anonymous after    {result.settled_anon_mb:>12,.0f} MB  "
          f"({SETTLE_SECONDS:.0f} s after the last call became visible)")  # fmt: skip
    print(f"  429/503 retries      {result.retries:>12,}  (reconnects {result.reconnects})")
    print("  CPU by thread        (threads)  seconds  µs/span")
    for name, (count, seconds) in sorted(result.threads.items(), key=lambda kv: -kv[1][1]):
        if seconds >= 0.005 * result.cpu_seconds:
            per_span = seconds / traffic.spans * 1e6
            print(f"    {name:<22} {count:>5} {seconds:>9.2f} {per_span:>8.1f}")
    print("\ndecode-only ceiling (parse_traces_request + flatten, one process)")
    print(f"  {ceiling_rate:>12,.0f} spans/s; end to end / ceiling = {rate / ceiling_rate:.2f}")
    met = rate >= GOAL_SPANS_PER_S and result.rss_mb < GOAL_RSS_MB
    print(f"\ngoals {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
