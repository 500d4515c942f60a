"""Where a server's idle RSS goes, step by step, before any traffic.

Imports the server's dependencies and opens the embedded store in the order
``tokentrail serve`` does, printing the process's RSS (and its anonymous and
file-backed parts, from ``/proc/self/status``) after each step. The baseline is
the web, gRPC and protobuf stack every collector needs; the ratio printed is
what the embedded engine (importing chDB, opening and migrating a store) adds
on top of it, and what share of issue 5's 400 MB RSS goal that already takes.
Linux only.

Run: python bench/idle_rss.py
"""

from __future__ import annotations

import sys
import tempfile

GOAL_MB = 400


def rss_mb() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in MB."""
    wanted = ("VmRSS", "RssAnon", "RssFile")
    with open("/proc/self/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith(wanted))
    return {name: int(fields[name].split()[0]) // 1024 for name in wanted}


def report(step: str) -> int:
    rss = rss_mb()
    print(
        f"  {step:<42} {rss['VmRSS']:5} MB  "
        f"(anonymous {rss['RssAnon']}, mapped from files {rss['RssFile']})"
    )
    return rss["VmRSS"]


def main() -> int:
    print("RSS after each step of starting a server, no traffic")
    report("python")
    import fastapi  # noqa: F401
    import grpc  # noqa: F401
    import uvicorn  # noqa: F401
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401

    baseline = report("web, gRPC and OTLP protobuf imported")
    import chdb  # noqa: F401
    import clickhouse_connect  # noqa: F401

    report("chDB and clickhouse-connect imported")
    from tokentrail.schema import apply_migrations, open_store
    from tokentrail.schema.store import embedded_dsn

    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as scratch:
        store = open_store(embedded_dsn(scratch))
        report("embedded store opened")
        apply_migrations(store)
        engine = report("schema migrated") - baseline
        import tokentrail.api.app
        import tokentrail.collector.service  # noqa: F401

        idle = report("tokentrail's API and collector imported")
        store.close()
    print(
        f"the embedded engine adds {engine} MB to the {baseline} MB baseline "
        f"({engine / baseline:.1f} x); idle RSS is {idle / GOAL_MB:.2f} x the {GOAL_MB} MB goal"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
