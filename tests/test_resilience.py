"""Restarts, concurrent steps, failing handlers, a killed worker, and mail
delivery: the engine loses nothing and does nothing twice."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from motor.db import events, instances, jobs, monitoring_checks, ordenes_servicio, outbox
from motor.engine import SYSTEM
from motor.errors import Conflict
from motor.handlers import Handler, default_registry
from motor.mail import SmtpSettings

from servers import smtp_server
from support import Driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTOR = [sys.executable, "-m", "motor.cli"]


def _db_env(engine):
    env = {**os.environ, "MOTOR_DATABASE_URL": engine.db.url.render_as_string(hide_password=False)}
    if engine.db.schema:
        env["MOTOR_DATABASE_SCHEMA"] = engine.db.schema
    return env


def _count(engine, table, *where):
    with engine.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def test_instance_resumes_at_every_wait_state_with_a_fresh_engine(make_engine, portal):
    """Each step runs on a brand-new Engine object over the same database."""
    fresh = lambda: Driver(make_engine(), portal)  # noqa: E731
    iid = fresh().start()
    fresh().complete(iid, "mesa", "Task_2_Registra")
    fresh().work(iid)
    fresh().complete(iid, "ge", "Task_3_Publica")
    fresh().work(iid)
    fresh().complete(iid, "ge", "Task_4_Notifica")
    fresh().work(iid)
    fresh().complete(iid, "sol", "Task_5_1_Confirma", satisfecho=False, comentarios_usuario="No abre")
    fresh().complete(iid, "mesa", "Task_7_Informa")
    fresh().work(iid)
    fresh().complete(iid, "ge", "Task_8_Corrige", correccion_realizada="Liga corregida")
    fresh().complete(iid, "ge", "Task_3_Publica")
    fresh().work(iid)
    fresh().complete(iid, "ge", "Task_4_Notifica")
    fresh().work(iid)
    fresh().complete(iid, "sol", "Task_5_1_Confirma", satisfecho=True)
    fresh().complete(iid, "mesa", "Task_6_Documenta")
    fresh().work(iid)
    shown = fresh().show(iid)
    assert shown["status"] == "completada" and shown["orden_servicio"]["estado"] == "cerrada"


def test_completing_a_completed_task_is_a_conflict_and_changes_nothing(driver, engine):
    iid = driver.start()
    task = driver.complete(iid, "mesa", "Task_2_Registra")
    before = _count(engine, events, events.c.instance_id == iid)
    with pytest.raises(Conflict):
        engine.complete(driver.user("mesa"), task["id"], {})
    assert _count(engine, events, events.c.instance_id == iid) == before


def test_a_claimed_task_is_reserved_to_its_claimer(driver, engine):
    engine.add_user(SYSTEM, "mesa2", ["mesa_ayuda"])
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    engine.claim(driver.user("mesa"), task["id"])
    with pytest.raises(Conflict):
        engine.claim(driver.user("mesa2"), task["id"])
    with pytest.raises(Conflict):
        engine.complete(driver.user("mesa2"), task["id"], {})
    engine.release(driver.user("mesa"), task["id"])
    engine.complete(driver.user("mesa2"), task["id"], {})
    assert driver.pending(iid) == []  # now a service task


def test_two_processes_completing_the_same_task_one_wins_one_conflicts(driver, engine):
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    env = _db_env(engine)
    cmd = MOTOR + ["complete", task["id"], "--user", "mesa", "--data", "{}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = sorted((p.wait(timeout=60), p.stderr.read()) for p in procs)
    assert [code for code, _ in results] == [0, 5], results
    # SQLite serializes writers (the loser finds the task gone); PostgreSQL
    # lets both run and the optimistic lock stops the second.
    assert "ya fue completada" in results[1][1] or "La instancia cambió" in results[1][1]
    assert _count(engine, events, events.c.instance_id == iid, events.c.type == "task_completed") == 1


def test_concurrent_steps_in_threads_one_wins_and_nothing_is_half_written(driver, engine):
    """Same race in-process (works on PostgreSQL too): a barrier releases both."""
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    barrier, outcomes = threading.Barrier(2), []

    def attempt():
        barrier.wait()
        try:
            engine.complete(driver.user("mesa"), task["id"], {})
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert sorted(outcomes) == ["conflict", "ok"]
    assert _count(engine, events, events.c.instance_id == iid, events.c.type == "task_completed") == 1
    assert _count(engine, jobs, jobs.c.instance_id == iid) == 1  # 2.1 pending, once
    with engine.db.read() as conn:
        assert conn.execute(select(instances.c.lock_version).where(instances.c.id == iid)).scalar() == 3


class Flaky:
    """Wraps the real Sistema de Oficios handler and fails while `broken`."""

    def __init__(self, broken=True):
        self.broken, self.calls = broken, 0
        self.real = default_registry().get("oficios.abrir_orden")

    def registry(self):
        """The default handlers with Sistema de Oficios replaced by this one."""
        registry = default_registry()
        registry.register(Handler("oficios.abrir_orden", self))
        return registry

    def __call__(self, ctx):
        self.calls += 1
        if self.broken:
            raise ConnectionError("Sistema de Oficios fuera de servicio")
        return self.real.apply(ctx)


def test_a_failing_handler_retries_then_raises_an_incident_and_retry_completes_it(make_engine, portal):
    flaky = Flaky()
    engine = make_engine(handlers=flaky.registry())
    d = Driver(engine, portal)
    iid = d.start()
    d.complete(iid, "mesa", "Task_2_Registra")
    d.work(iid)
    assert flaky.calls == engine.config.max_attempts == 3
    [incident] = engine.incidents(SYSTEM)
    assert incident["element_id"] == "Task_2_1_LevantaOrden" and incident["status"] == "incidente"
    assert "Sistema de Oficios fuera de servicio" in incident["last_error"]
    assert _count(engine, ordenes_servicio) == 0
    assert [e["type"] for e in d.history(iid)][-1] == "incident"
    assert d.show(iid)["status"] == "en_curso"
    # Nothing runs it again until an administrator retries it.
    d.work(iid)
    assert flaky.calls == 3
    flaky.broken = False
    engine.retry_incident(SYSTEM, incident["id"])
    d.work(iid)
    assert engine.incidents(SYSTEM) == []
    assert d.show(iid)["folio"].endswith("-00001")
    assert d.pending(iid) == ["Task_3_Publica"]
    kinds = [e["type"] for e in d.history(iid)]
    assert kinds.count("incident") == 1 and kinds.count("incident_retried") == 1


def test_backoff_delays_the_next_attempt(make_engine, portal):
    flaky = Flaky()
    engine = make_engine(handlers=flaky.registry(), retry_base_seconds=3600)
    d = Driver(engine, portal)
    iid = d.start()
    d.complete(iid, "mesa", "Task_2_Registra")
    d.work(iid)
    assert flaky.calls == 1  # the second attempt is an hour away
    [job] = d.show(iid)["service_tasks"]
    assert job["status"] == "pendiente" and job["attempts"] == 1 and "fuera de servicio" in job["last_error"]


def test_killed_worker_mid_handler_item_is_taken_again_and_done_once(make_engine, portal, tmp_path):
    """kill -9 of `motor work` while the PSDT-07 portal check hangs."""
    engine = make_engine(lock_seconds=1)
    d = Driver(engine, portal)
    iid = d.start()
    d.complete(iid, "mesa", "Task_2_Registra")
    d.work(iid)
    d.complete(iid, "ge", "Task_3_Publica")
    engine.worker().run_jobs()  # 3.2 publishes; the portal check is now due
    assert [j["element_id"] for j in d.show(iid)["service_tasks"]] == ["Task_VerificaPortal"]

    portal.delay = 30  # the portal hangs: the worker will be mid-handler
    env = {**_db_env(engine), "MOTOR_PORTAL_URL": portal.portal_url,
           "MOTOR_LOCK_SECONDS": "1", "MOTOR_HTTP_TIMEOUT": "60"}
    proc = subprocess.Popen(MOTOR + ["work", "--poll", "0.1"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not portal.requests and time.time() < deadline:
        time.sleep(0.05)
    assert portal.requests, "the worker never reached the portal"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with engine.db.read() as conn:
        job = conn.execute(select(jobs).where(jobs.c.instance_id == iid)).mappings().one()
    assert job["locked_by"] is not None and job["attempts"] == 1  # the dead worker's lease

    portal.delay = 0
    time.sleep(1.2)  # the lease expires
    d.work(iid)
    assert d.pending(iid) == ["Task_4_Notifica"]
    history = d.history(iid)
    executed = [e for e in history if e["type"] == "service_task_executed" and e["element_id"] == "Task_VerificaPortal"]
    assert len(executed) == 1 and executed[0]["data"]["attempt"] == 2
    assert _count(engine, monitoring_checks, monitoring_checks.c.kind == "portal") == 1


def test_worker_delivers_the_outbox_over_smtp_once(make_engine, portal):
    with smtp_server() as (host, port, inbox):
        engine = make_engine(smtp=SmtpSettings(host=host, port=port, sender="portal@sig.gob.mx"))
        d = Driver(engine, portal)
        iid = d.start()
        d.through_publication(iid)
        assert [m.rcpt_tos for m in inbox] == [["ge@sig.gob.mx"], ["mesa@sig.gob.mx"],
                                               ["mesa@sig.gob.mx", "sol@salud.gob.mx"]]
        assert "integrar «Citas médicas en línea» al Portal" in inbox[0].message["Subject"]
        assert _count(engine, outbox, outbox.c.status == "enviado") == 3
        assert engine.worker().run_once() == 0 and len(inbox) == 3  # nothing sent twice
        assert [e["data"]["to"] for e in d.history(iid) if e["type"] == "mail_sent"][0] == ["ge@sig.gob.mx"]


def test_temporary_smtp_failure_is_retried_and_permanent_one_is_marked_failed(make_engine, portal):
    with smtp_server() as (host, port, inbox):
        engine = make_engine(smtp=SmtpSettings(host=host, port=port))
        d = Driver(engine, portal)
        iid = d.start()
        inbox.reject(451)
        d.complete(iid, "mesa", "Task_2_Registra")
        d.work(iid)
        with engine.db.read() as conn:
            mail = conn.execute(select(outbox)).mappings().one()
        assert mail["status"] == "fallido" and mail["attempts"] == engine.config.max_attempts
        assert "451" in mail["last_error"]
        inbox.reject(None)
        with engine.db.transaction() as conn:  # an administrator re-queues it
            conn.execute(outbox.update().values(status="pendiente", attempts=0))
        d.work(iid)
        assert len(inbox) == 1
        inbox.reject(550)
        d.complete(iid, "ge", "Task_3_Publica")
        d.work(iid)
        d.complete(iid, "ge", "Task_4_Notifica")
        d.work(iid)
        with engine.db.read() as conn:
            rows = conn.execute(select(outbox.c.status, outbox.c.attempts).order_by(outbox.c.id)).all()
        assert [tuple(r) for r in rows] == [("enviado", 1), ("fallido", 1), ("fallido", 1)]  # 550: no retry
