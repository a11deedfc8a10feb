"""Replay and audit speed: the median time to reconstruct any step of a
~100-event instance (`motor replay --to-step K` through the Engine: one read
of the instance, its events and its versions, then the fold), the time to
re-execute it (`--verify`), and `motor audit verify` throughput over
10,000 events. Prints `replay_step_ms: X` last (goal: <= 50).

    .venv/bin/python bench/replay.py [--samples 300] [--events 10000] [--database-url URL]
"""
import argparse
import importlib.util
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This directory holds queue.py, which would shadow the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from motor import events  # noqa: E402
from motor.config import Config  # noqa: E402
from motor.db import instances  # noqa: E402
from motor.engine import SYSTEM, Engine  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
bench_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_engine)
REWORK, HAPPY, Portal, run_motor = bench_engine.REWORK, bench_engine.HAPPY, bench_engine.Portal, bench_engine.run_motor
FILES = sorted((ROOT / "procesos").glob("*.bpmn"))
# Not satisfied twice, then satisfied: a little over 100 events.
TWICE = REWORK[:6] + HAPPY[1:3] + REWORK[3:6] + HAPPY[1:]


def build(url):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    cfg = Config(database_url=url, portal_url=f"{base}/portal")
    cfg.constants = {"ESPERA_REVERIFICACION": "PT0S"}
    engine = Engine(cfg)
    Portal.engine = engine
    engine.init()
    engine.deploy(SYSTEM, [(f"procesos/{f.name}", f.read_bytes()) for f in FILES])
    engine.add_user(SYSTEM, "sol", ["solicitante"], "Secretaría de Salud")
    engine.add_user(SYSTEM, "mesa", ["mesa_ayuda"])
    engine.add_user(SYSTEM, "ge", ["gobierno_electronico"])
    engine.add_user(SYSTEM, "auditor", ["auditor"])
    _, iid = run_motor(engine, engine.worker("bench"), base, TWICE)
    server.shutdown()
    return engine, iid


def clone(engine, iid, total_events):
    """Copies of the instance with freshly chained copies of its events."""
    history = engine.history(SYSTEM, iid)
    with engine.db.read() as conn:
        row = dict(conn.execute(select(instances).where(instances.c.id == iid)).mappings().one())
    row.pop("id")
    copies = max(0, -(-total_events // len(history)) - 1)  # at least total_events in all
    with engine.db.transaction() as conn:
        for _ in range(copies):
            new_id = conn.execute(instances.insert().values(**row)).inserted_primary_key[0]
            events.append(conn, new_id, [{"type": e["type"], "process_id": e["process_id"],
                                          "element_id": e["element_id"], "element_name": e["element_name"],
                                          "task_id": e["task_id"], "username": e["user"], "data": e["data"]}
                                         for e in history])
    return (copies + 1) * len(history)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--database-url")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, iid = build(args.database_url or f"sqlite:///{tmp}/bench.db")
        auditor = engine.user("auditor")
        n = len(engine.history(SYSTEM, iid))
        engine.replay(auditor, iid, 1)  # warm the version-graph cache, as a running server would be
        rng = random.Random(5)
        times = []
        for _ in range(args.samples):
            k = rng.randint(1, n)
            t = time.perf_counter()
            engine.replay(auditor, iid, k)
            times.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        result = engine.replay_verify(auditor, iid)
        verify_ms = (time.perf_counter() - t) * 1000
        assert result.ok, str(result)

        total = clone(engine, iid, args.events)
        t = time.perf_counter()
        report = engine.audit_verify(auditor)
        elapsed = time.perf_counter() - t
        assert report.ok and report.events == total, report
        print(f"instance events: {n}")
        print(f"replay_step_ms p95: {statistics.quantiles(times, n=20)[18]:.2f}")
        print(f"replay_verify_ms: {verify_ms:.1f}")
        print(f"audit_verify_events: {report.events}")
        print(f"audit_verify_events_per_s: {report.events / elapsed:,.0f}")
        print(f"replay_step_ms: {statistics.median(times):.2f}")
        engine.db.dispose()


if __name__ == "__main__":
    main()
