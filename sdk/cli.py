"""The ``tokentrail`` command: serve, collector, migrate, keys, alerts, prices, version.

Server parts are imported inside the commands that need them, so the light
SDK install (no ``[server]`` extra) still answers ``tokentrail version``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from tokentrail import __version__
from tokentrail.redaction import Redactor

if TYPE_CHECKING:
    import uvicorn

    from tokentrail.api.auth import KeyRing
    from tokentrail.collector.grpc_receiver import GrpcReceiver
    from tokentrail.collector.ingest_queue import IngestQueue
    from tokentrail.schema.store import Store

log = logging.getLogger("tokentrail")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318
DEFAULT_GRPC_PORT = 4317  # OTLP/gRPC's registered port
DEFAULT_SPOOL_MAX_BYTES = 1024**3
# Off by default: the tokentrail SDK redacts before export, and the store is the
# operator's own; turn it on for apps whose other SDKs send content unredacted.
REDACT_CHOICES = ("builtin", "off")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TOKENTRAIL_{name}", default)


def _ready_store(data_dir: str) -> Store:
    """Open the configured store with every migration and the shipped prices applied."""
    try:
        from tokentrail.schema import apply_migrations, dsn_from_env, open_store
        from tokentrail.schema.prices import seed_shipped_prices
    except ImportError as exc:
        raise SystemExit(
            f"tokentrail: the server is not installed ({exc.name} missing); "
            'run: pip install "tokentrail[server]"'
        ) from exc
    store = open_store(dsn_from_env(data_dir))
    apply_migrations(store)
    seed_shipped_prices(store)
    return store


def _start_demo(server: object, host: str, port: int, api_key: str | None) -> None:
    """Send demo traffic through the real SDK and OTLP path once the server listens."""
    from tokentrail.demo import run_demo

    def send() -> None:
        while not getattr(server, "started", False):
            time.sleep(0.05)
        target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        endpoint = f"http://{'[' + target + ']' if ':' in target else target}:{port}"
        sent = run_demo(endpoint, api_key=api_key)
        log.info(
            "demo: sent %d LLM calls. Try: curl -s %s/api/v1/features%s",
            sent,
            endpoint,
            f" -H 'Authorization: Bearer {api_key}'" if api_key else "",
        )

    threading.Thread(target=send, name="tokentrail-demo", daemon=True).start()


def serve(args: argparse.Namespace) -> int:
    """Collector and query API in one process."""
    return _run_server(args, with_api=True)


def collector(args: argparse.Namespace) -> int:
    """The collector alone: OTLP over HTTP and gRPC, probes and metrics."""
    return _run_server(args, with_api=False)


def _run_server(args: argparse.Namespace, *, with_api: bool) -> int:
    import uvicorn

    from tokentrail.api.auth import KEYS_ENV, KeyRing, create_key, is_loopback, parse_env_keys
    from tokentrail.collector.pipeline import IngestPipeline
    from tokentrail.collector.service import configured_queue, open_ingest_queue, tune_gc

    try:
        env_keys = parse_env_keys(os.environ.get(KEYS_ENV, ""))
        limits = configured_queue()
    except ValueError as exc:
        print(f"tokentrail: {exc}", file=sys.stderr)
        return 2
    redact = args.redact.strip().lower()
    if redact not in REDACT_CHOICES:
        print(f"tokentrail: --redact must be one of {', '.join(REDACT_CHOICES)}", file=sys.stderr)
        return 2
    store = _ready_store(args.data_dir)
    keyring = KeyRing(store, env_keys)
    if keyring.is_open:
        if not is_loopback(args.host):
            print(
                f"tokentrail: refusing to listen on {args.host} without API keys; set "
                f"{KEYS_ENV}=key=project or run `tokentrail keys create --project NAME`",
                file=sys.stderr,
            )
            store.close()
            return 2
        log.warning("no API keys configured: serving open on loopback, project 'default'")
    redactor = Redactor() if redact == "builtin" else None
    if redactor is not None:
        log.info("redacting prompts and completions with the built-in patterns before storing")
    pipeline = IngestPipeline(store, redactor=redactor)
    spool_dir = Path(args.spool_dir or Path(args.data_dir) / "spool")
    queue = open_ingest_queue(store, pipeline, spool_dir, args.spool_max_bytes, limits)
    if with_api:
        from tokentrail.api.app import create_app

        app = create_app(store, keyring, pipeline, queue)
    else:
        from tokentrail.collector.service import collector_app

        app = collector_app(store, keyring, queue)
    otlp_grpc = None
    if args.grpc_port:
        otlp_grpc = _start_grpc(args, keyring, queue)
        if otlp_grpc is None:
            queue.close()
            store.close()
            return 2
    tune_gc()  # everything long-lived is loaded by now
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    )
    log.info(
        "tokentrail %s: OTLP/HTTP%s on http://%s:%d, store %s, spool %s",
        __version__,
        ", API (docs at /docs)" if with_api else "",
        args.host,
        args.port,
        "embedded" if store.embedded else "server",
        spool_dir,
    )
    alerts = None
    if with_api:
        from tokentrail.api.alerts.scheduler import start_alerts

        if args.demo:
            demo_key = None
            if not keyring.is_open:
                demo_key = create_key(store, "demo", name="tokentrail serve --demo")
            _start_demo(server, args.host, args.port, demo_key)
        alerts = start_alerts(store, args.alert_interval)
    _stop_on_signals(server)
    try:
        server.run()
    finally:
        if otlp_grpc is not None:
            # Let in-flight exports reach the queue before it drains.
            otlp_grpc.stop(grace=5).wait()
        queue.close()
        if alerts is not None:
            alerts.stop()
        store.close()
    log.info("tokentrail stopped: queue drained, store closed")
    return 0


def _stop_on_signals(server: uvicorn.Server) -> None:
    """Have SIGTERM and SIGINT stop ``server`` and let ``_run_server`` clean up after it.

    uvicorn handles them while it runs, then raises them again once it has shut
    down; under the default handlers that kills the process (or raises
    KeyboardInterrupt) before the queue drains and the store closes.
    """

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only, and only it may set handlers
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stop)


def _start_grpc(
    args: argparse.Namespace, keyring: KeyRing, queue: IngestQueue
) -> GrpcReceiver | None:
    """Start OTLP/gRPC on ``--host``:``--grpc-port``; None (after saying why) if it cannot bind."""
    from tokentrail.collector.grpc_receiver import grpc_address, grpc_server

    address = grpc_address(args.host, args.grpc_port)
    try:
        server, _ = grpc_server(queue.submit, keyring, address)
    except RuntimeError as exc:
        print(
            f"tokentrail: cannot serve OTLP/gRPC on {address} ({exc}); "
            "choose another --grpc-port, or 0 to turn gRPC off",
            file=sys.stderr,
        )
        return None
    server.start()
    log.info("OTLP/gRPC on %s", address)
    return server


def migrate(args: argparse.Namespace) -> int:
    from tokentrail.schema.migrate import applied_versions

    store = _ready_store(args.data_dir)
    print(f"schema at version {max(applied_versions(store), default=0)}")
    store.close()
    return 0


def keys_create(args: argparse.Namespace) -> int:
    from tokentrail.api.auth import create_key

    store = _ready_store(args.data_dir)
    print(create_key(store, args.project, name=args.name))
    store.close()
    return 0


def alerts_evaluate(args: argparse.Namespace) -> int:
    from tokentrail.api.alerts.scheduler import run_once

    store = _ready_store(args.data_dir)
    print(run_once(store, project_id=args.project).summary())
    store.close()
    return 0


def prices_import(args: argparse.Namespace) -> int:
    from tokentrail.collector.price_import import import_prices

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"tokentrail: {exc}", file=sys.stderr)
        return 2
    store = _ready_store(args.data_dir)
    try:
        report = import_prices(store, text, args.project, args.effective_from)
    except ValueError as exc:
        print(f"tokentrail: {args.file}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print("\n".join(report.lines()))
    return 0


def version(_: argparse.Namespace) -> int:
    print(__version__)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokentrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_store(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--data-dir",
            default=_env("DATA_DIR", "./tokentrail-data"),
            help="embedded store directory (TOKENTRAIL_DATA_DIR); ignored when "
            "TOKENTRAIL_CLICKHOUSE_URL names a server",
        )
        return sub

    def with_server(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_store(sub)
        sub.add_argument("--host", default=_env("HOST", DEFAULT_HOST), help="TOKENTRAIL_HOST")
        sub.add_argument(
            "--port",
            type=int,
            default=int(_env("PORT", str(DEFAULT_PORT))),
            help="OTLP/HTTP (and API) port (TOKENTRAIL_PORT)",
        )
        sub.add_argument(
            "--grpc-port",
            type=int,
            default=int(_env("GRPC_PORT", str(DEFAULT_GRPC_PORT))),
            help="OTLP/gRPC port, 0 turns gRPC off (TOKENTRAIL_GRPC_PORT)",
        )
        sub.add_argument(
            "--redact",
            default=_env("REDACT", "off"),
            help="redact emails, phone and card numbers and secrets in content before storing "
            "it: builtin or off (TOKENTRAIL_REDACT; default off)",
        )
        sub.add_argument(
            "--spool-dir",
            default=_env("SPOOL_DIR", ""),
            help="write-ahead spool of accepted exports (TOKENTRAIL_SPOOL_DIR; default "
            "DATA_DIR/spool)",
        )
        sub.add_argument(
            "--spool-max-bytes",
            type=int,
            default=int(_env("SPOOL_MAX_BYTES", str(DEFAULT_SPOOL_MAX_BYTES))),
            help="bytes of accepted, unwritten exports the spool may hold before answering "
            "503 (TOKENTRAIL_SPOOL_MAX_BYTES; default 1 GiB)",
        )
        return sub

    run = with_server(commands.add_parser("serve", help="run collector and API in one process"))
    run.add_argument(
        "--demo",
        action="store_true",
        default=_env("DEMO", "") in ("1", "true"),
        help="also send a few minutes of synthetic LLM traffic through the SDK (TOKENTRAIL_DEMO)",
    )
    run.add_argument(
        "--alert-interval",
        type=float,
        default=os.environ.get("TOKENTRAIL_ALERT_INTERVAL"),  # argparse applies type=float
        help="seconds between alert evaluations, 0 disables (TOKENTRAIL_ALERT_INTERVAL; "
        "default 60 on the embedded store, off with a ClickHouse server: use cron there)",
    )
    run.set_defaults(handler=serve)
    with_server(
        commands.add_parser(
            "collector", help="run only the collector (OTLP/HTTP and gRPC, probes, /metrics)"
        )
    ).set_defaults(handler=collector)
    with_store(commands.add_parser("migrate", help="apply schema migrations")).set_defaults(
        handler=migrate
    )
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = with_store(keys.add_parser("create", help="create a key for a project"))
    create.add_argument("--project", required=True)
    create.add_argument("--name", default="")
    create.set_defaults(handler=keys_create)
    alerts = commands.add_parser("alerts", help="alert rules").add_subparsers(
        dest="alerts_command", required=True
    )
    once = with_store(alerts.add_parser("evaluate", help="evaluate every alert rule once"))
    once.add_argument("--project", default=None, help="only this project's rules")
    once.set_defaults(handler=alerts_evaluate)
    prices = commands.add_parser("prices", help="the model price table").add_subparsers(
        dest="prices_command", required=True
    )
    load = with_store(
        prices.add_parser(
            "import",
            help="import prices from a tokentrail price file or LiteLLM's "
            "model_prices_and_context_window.json",
        )
    )
    load.add_argument("file")
    load.add_argument("--project", default="", help="as this project's prices (default: shared)")
    load.add_argument(
        "--effective-from",
        type=date.fromisoformat,
        default=None,
        help="YYYY-MM-DD the LiteLLM prices take effect (default: today for models already "
        "priced, every call for new ones)",
    )
    load.set_defaults(handler=prices_import)
    commands.add_parser("version", help="print the version").set_defaults(handler=version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = _parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
