"""Work-queue latency: median server-side time of GET /tareas (Flask test
client, warm, requests to both databases interleaved) for a
gobierno_electronico user, with 1,000 and with 50,000 open instances in SQLite,
each waiting at Task_3_Publica. Prints both medians and
`queue_scaling_ratio: X` (50k / 1k) last; the goal is <= 1.5.

One real instance is driven to Task_3_Publica through the engine; the others
are bulk copies of its rows (instances with its state, whose user-task id is
rewritten; user_tasks; user_task_roles; ordenes_servicio), spread over the
last 10 days. Events and mails of the copies are not written: the queue never
reads them.

    .venv/bin/python bench/queue.py [--sizes 1000 50000] [--requests 200]
"""
import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from motor.config import Config  # noqa: E402
from motor.db import Database, instances, ordenes_servicio, user_task_roles, user_tasks, utcnow  # noqa: E402
from motor.engine import SYSTEM, Engine  # noqa: E402
from web import create_app  # noqa: E402

FILES = sorted((ROOT / "procesos").glob("*.bpmn"))
BATCH = 5000


def build(path, size):
    db = Database(f"sqlite:///{path}")
    engine = Engine(Config(database_url=str(db.url), portal_url="http://127.0.0.1:9/portal"), db=db)
    engine.init()
    engine.deploy(SYSTEM, [(f"procesos/{f.name}", f.read_bytes()) for f in FILES])
    engine.add_user(SYSTEM, "sol", ["solicitante"], "Secretaría de Salud", "x")
    engine.add_user(SYSTEM, "mesa", ["mesa_ayuda"], password="x")
    engine.add_user(SYSTEM, "ge", ["gobierno_electronico"], password="ge-clave")
    iid = engine.start(engine.user("sol"), "PSDT05", {"nombre_servicio": "Servicio 1",
                                                      "ubicacion": "https://servicios.example/1"})
    engine.complete(engine.user("mesa"), engine.tasks(engine.user("mesa"), instance_id=iid)[0]["id"], {})
    engine.worker("bench").run_once()  # 2.1 opens the orden de servicio, 2.2 notifies
    with db.read() as conn:
        inst = dict(conn.execute(select(instances).where(instances.c.id == iid)).mappings().one())
        task = dict(conn.execute(select(user_tasks).where(user_tasks.c.instance_id == iid)).mappings().one())
        orden = dict(conn.execute(select(ordenes_servicio).where(ordenes_servicio.c.instance_id == iid)).mappings().one())
    assert task["element_id"] == "Task_3_Publica", task["element_id"]
    now = utcnow()
    span = timedelta(days=10).total_seconds()
    for start in range(2, size + 1, BATCH):
        rows_i, rows_t, rows_r, rows_o = [], [], [], []
        for n in range(start, min(start + BATCH, size + 1)):
            tid = str(uuid.uuid4())
            created = now - timedelta(seconds=span * n / size)
            folio = f"OS-{now.year}-{n:05d}"
            rows_i.append({**inst, "id": n, "folio": folio, "nombre_servicio": f"Servicio {n}",
                           "state": inst["state"].replace(task["id"], tid), "started_at": created,
                           "updated_at": created})
            rows_t.append({**task, "id": tid, "instance_id": n, "created_at": created})
            rows_r.append({"task_id": tid, "role": "gobierno_electronico", "created_at": created})
            rows_o.append({**orden, "id": n, "folio": folio, "numero": n, "instance_id": n,
                           "nombre_servicio": f"Servicio {n}", "fecha_recepcion": created})
        with db.transaction() as conn:
            conn.execute(instances.insert(), rows_i)
            conn.execute(user_tasks.insert(), rows_t)
            conn.execute(user_task_roles.insert(), rows_r)
            conn.execute(ordenes_servicio.insert(), rows_o)
    with db.transaction() as conn:
        conn.exec_driver_sql("ANALYZE")
    return engine


def client_for(engine):
    app = create_app({"ENGINE": engine, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False, "WEB_ENV": "bench"})
    client = app.test_client()
    assert client.post("/login", data={"usuario": "ge", "clave": "ge-clave"}).status_code == 302
    for _ in range(20):  # warm: caches, connections, templates
        assert client.get("/tareas").status_code == 200
    body = client.get("/tareas").get_data(as_text=True)
    assert body.count('<tr class="') == app.config["WEB_PAGE_SIZE"], "the page does not show a full page of tasks"
    return client


def measure(clients, requests):
    """Interleave the requests to each database, so that load on the machine
    during the run weighs on both medians alike."""
    times = [[] for _ in clients]
    for _ in range(requests):
        for i, client in enumerate(clients):
            started = time.perf_counter()
            response = client.get("/tareas")
            times[i].append(time.perf_counter() - started)
            assert response.status_code == 200
    return [statistics.median(t) * 1000 for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 50000])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    engines = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            started = time.perf_counter()
            engines.append(build(Path(tmp) / f"cola-{size}.db", size))
            print(f"open_instances: {size}  build_s: {time.perf_counter() - started:.1f}")
        medians = measure([client_for(e) for e in engines], args.requests)
        for engine in engines:
            engine.db.dispose()
    print(f"queue_median_ms_{args.sizes[0]}: {medians[0]:.2f}")
    print(f"queue_median_ms_{args.sizes[1]}: {medians[1]:.2f}")
    print(f"queue_scaling_ratio: {medians[1] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
