"""The tamper-evident history: every event is chained to the one before it;
editing, deleting or cutting events is detected and named (instance and
seq); concurrent appends never fork a chain; an auditor changes nothing.
On SQLite and PostgreSQL."""
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from motor import audit, events as events_mod
from motor.config import PROJECT_ROOT
from motor.db import events
from motor.engine import SYSTEM
from motor.errors import Conflict, NotAllowed, NotFound


def _env(engine):
    env = {**os.environ, "MOTOR_DATABASE_URL": engine.db.url.render_as_string(hide_password=False)}
    if engine.db.schema:
        env["MOTOR_DATABASE_SCHEMA"] = engine.db.schema
    return env


def motor_cli(engine, *args):
    return subprocess.run([sys.executable, "-m", "motor.cli", *args], cwd=PROJECT_ROOT, env=_env(engine),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def two(driver):
    """Two instances: one through publication (~30 events), one just started."""
    a = driver.start()
    driver.through_publication(a)
    b = driver.start(nombre_servicio="Licencias en línea")
    return a, b


def _rows(engine, iid):
    with engine.db.read() as conn:
        return [dict(r) for r in conn.execute(select(events).where(events.c.instance_id == iid)
                                              .order_by(events.c.seq)).mappings()]


def _change(engine, iid, seq, **values):
    with engine.db.transaction() as conn:
        conn.execute(update(events).where(events.c.instance_id == iid, events.c.seq == seq).values(**values))


def _rehash_from(engine, iid, seq):
    """What a careful forger does: recompute every hash from `seq` on."""
    rows = _rows(engine, iid)
    prev = rows[seq - 2]["hash"] if seq > 1 else None
    with engine.db.transaction() as conn:
        for row in rows[seq - 1:]:
            row["prev_hash"] = prev
            prev = audit.event_hash(row)
            conn.execute(update(events).where(events.c.id == row["id"]).values(prev_hash=row["prev_hash"], hash=prev))


def _only(report):
    assert not report.ok
    [finding] = report.findings
    return finding.instance_id, finding.seq, finding.kind


def test_each_event_is_chained_to_the_one_before(engine, two):
    for iid in two:
        rows = _rows(engine, iid)
        assert rows[0]["prev_hash"] is None
        for before, row in zip([None] + rows, rows):
            assert row["hash"] == audit.event_hash(row) and len(row["hash"]) == 64
            if before is not None:
                assert row["prev_hash"] == before["hash"]
    report = engine.audit_verify(SYSTEM)
    assert report.ok and report.instances == 2 and report.events == sum(len(_rows(engine, i)) for i in two)


def test_the_hash_covers_the_documented_canonical_json(engine, two):
    row = _rows(engine, two[1])[0]
    text = audit.canonical(row).decode("utf-8")
    parsed = json.loads(text)
    assert sorted(parsed) == sorted(audit.FIELDS)
    assert parsed["created_at"] == row["created_at"].isoformat(timespec="microseconds")
    assert text == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("what, values, seq", [
    ("data", lambda r: {"data": {**r["data"], "form": {**r["data"]["form"], "observaciones_mesa": "otra cosa"}}}, None),
    ("user", lambda r: {"username": "ge"}, None),
    ("time", lambda r: {"created_at": r["created_at"] + timedelta(seconds=1)}, None),
    ("type", lambda r: {"type": "task_released"}, None),
    ("prev_hash", lambda r: {"prev_hash": "0" * 64}, None),
])
def test_an_edited_event_is_named(engine, two, what, values, seq):
    a, b = two
    target = next(r for r in _rows(engine, a) if r["type"] == "task_completed" and r["element_id"] == "Task_2_Registra")
    _change(engine, a, target["seq"], **values(target))
    assert _only(engine.audit_verify(SYSTEM)) == (a, target["seq"], "contenido")
    assert engine.audit_verify(SYSTEM, instance_id=b).ok


def test_an_edited_and_rehashed_event_breaks_the_next_link(engine, two):
    a, _ = two
    _change(engine, a, 5, username="intruso")
    row = _rows(engine, a)[4]
    _change(engine, a, 5, hash=audit.event_hash(row))
    assert _only(engine.audit_verify(SYSTEM)) == (a, 6, "enlace")


def test_a_deleted_event_in_the_middle_is_named(engine, two):
    a, _ = two
    with engine.db.transaction() as conn:
        conn.execute(delete(events).where(events.c.instance_id == a, events.c.seq == 7))
    report = engine.audit_verify(SYSTEM)
    assert _only(report) == (a, 7, "secuencia")
    assert "falta la secuencia 7" in report.findings[0].message


def test_a_forged_event_without_hash_is_named(engine, two):
    a, b = two
    last = _rows(engine, b)[-1]
    with engine.db.transaction() as conn:
        conn.execute(events.insert().values(instance_id=b, seq=last["seq"] + 1, type="task_completed",
                                            created_at=last["created_at"], data={}))
    assert _only(engine.audit_verify(SYSTEM)) == (b, last["seq"] + 1, "sin_hash")


def test_events_cut_off_at_the_end_are_caught_only_with_the_heads(engine, two):
    a, b = two
    heads = audit.parse_heads(json.loads(json.dumps(engine.audit_heads(SYSTEM))))
    total = len(_rows(engine, a))
    assert heads[a] == (total, _rows(engine, a)[-1]["hash"])
    with engine.db.transaction() as conn:
        conn.execute(delete(events).where(events.c.instance_id == a, events.c.seq >= total - 1))
    assert engine.audit_verify(SYSTEM).ok  # the chain that is left is consistent
    report = engine.audit_verify(SYSTEM, heads=heads)
    assert _only(report) == (a, total - 1, "secuencia")
    assert "faltan eventos al final" in report.findings[0].message
    assert engine.audit_verify(SYSTEM, instance_id=b, heads=heads).ok


def test_a_rewritten_tail_is_caught_with_the_heads(engine, two):
    a, _ = two
    heads = audit.parse_heads(engine.audit_heads(SYSTEM))
    _change(engine, a, 10, username="intruso")
    _rehash_from(engine, a, 10)
    assert engine.audit_verify(SYSTEM).ok
    assert _only(engine.audit_verify(SYSTEM, heads=heads)) == (a, heads[a][0], "cabeza")


def test_a_whole_deleted_chain_is_caught_with_the_heads(engine, two):
    a, b = two
    heads = audit.parse_heads(engine.audit_heads(SYSTEM))
    with engine.db.transaction() as conn:
        conn.execute(delete(events).where(events.c.instance_id == b))
    assert _only(engine.audit_verify(SYSTEM, heads=heads)) == (b, 1, "secuencia")


def test_new_events_after_the_heads_were_taken_are_fine(driver, engine, two):
    a, _ = two
    heads = audit.parse_heads(engine.audit_heads(SYSTEM))
    driver.complete(a, "sol", "Task_5_1_Confirma", satisfecho=True)
    assert engine.audit_verify(SYSTEM, heads=heads).ok


def test_cli_verify_head_and_exit_codes(engine, two, tmp_path):
    a, b = two
    ok = motor_cli(engine, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "historial íntegro" in ok.stdout
    head = motor_cli(engine, "audit", "head", "--json")
    assert head.returncode == 0
    document = json.loads(head.stdout)
    assert set(document["instances"]) == {str(a), str(b)} and len(document["digest"]) == 64
    head_file = tmp_path / "cabezas.json"
    head_file.write_text(head.stdout, encoding="utf-8")

    _change(engine, b, 2, username="intruso")
    bad = motor_cli(engine, "audit", "verify")
    assert bad.returncode == 1
    assert f"instancia {b}, evento 2: el hash del contenido no coincide" in bad.stdout
    as_json = json.loads(motor_cli(engine, "audit", "verify", "--json").stdout)
    assert as_json["ok"] is False and as_json["findings"][0] == {
        "instance_id": b, "seq": 2, "kind": "contenido", "message": as_json["findings"][0]["message"]}
    assert motor_cli(engine, "audit", "verify", "--instance", str(a)).returncode == 0

    total = len(_rows(engine, a))
    with engine.db.transaction() as conn:
        conn.execute(delete(events).where(events.c.instance_id == a, events.c.seq == total))
    assert motor_cli(engine, "audit", "verify", "--instance", str(a)).returncode == 0
    cut = motor_cli(engine, "audit", "verify", "--instance", str(a), "--head", str(head_file))
    assert cut.returncode == 1 and f"instancia {a}, evento {total}: faltan eventos al final" in cut.stdout
    broken = tmp_path / "roto.json"
    broken.write_text("{}", encoding="utf-8")
    assert motor_cli(engine, "audit", "verify", "--head", str(broken)).returncode == 1


def test_concurrent_appends_never_fork_a_chain(driver, engine):
    """Writers outside engine steps (mail, claims) and a step, all at once."""
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    mesa = driver.user("mesa")
    barrier = threading.Barrier(6)
    failures = []

    def appender(n):
        barrier.wait()
        for j in range(5):
            with engine.db.transaction() as conn:
                events_mod.append(conn, iid, [{"type": "mail_sent", "data": {"n": n, "j": j}}])

    def claimer():
        barrier.wait()
        for _ in range(4):
            try:
                engine.claim(mesa, task["id"])
                engine.release(mesa, task["id"])
            except (Conflict, NotFound):
                return  # completed meanwhile

    def completer():
        barrier.wait()
        for _ in range(20):
            try:
                return engine.complete(mesa, task["id"], {})
            except Conflict:
                continue  # the instance changed under us: try again

    def guarded(fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # collected and reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=guarded, args=(appender, n)) for n in range(4)]
    threads += [threading.Thread(target=guarded, args=(claimer,)), threading.Thread(target=guarded, args=(completer,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    rows = _rows(engine, iid)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len([r for r in rows if r["type"] == "mail_sent"]) == 20
    assert any(r["type"] == "task_completed" for r in rows)
    assert engine.audit_verify(SYSTEM).ok
    assert engine.replay_verify(SYSTEM, iid).ok


# -- the auditor reads everything and changes nothing ------------------------------
def _mutations(engine, driver, iid, task_id):
    bpmn = (PROJECT_ROOT / "procesos" / "psdt05.bpmn").read_bytes()
    return {
        "add_user": lambda u: engine.add_user(u, "nuevo", ["mesa_ayuda"]),
        "deploy": lambda u: engine.deploy(u, [("procesos/psdt05.bpmn", bpmn)]),
        "start": lambda u: engine.start(u, "PSDT05", {"nombre_servicio": "X", "ubicacion": "https://x.gob.mx",
                                                      "dependencia": "Secretaría de Salud"}),
        "claim": lambda u: engine.claim(u, task_id),
        "release": lambda u: engine.release(u, task_id),
        "complete": lambda u: engine.complete(u, task_id, {}),
        "retry_incident": lambda u: engine.retry_incident(u, "no-existe"),
        "save_draft": lambda u: engine.save_draft(u, "PSDT05", bpmn.decode("utf-8")),
        "discard_draft": lambda u: engine.discard_draft(u, "PSDT05"),
        "deploy_draft": lambda u: engine.deploy_draft(u, "PSDT05"),
        "migrate": lambda u: engine.migrate(u, [iid], 1),
    }


# Public Engine methods that need no actor or only read: anything else must be
# listed in _mutations (a new mutating method must be refused to auditors too).
READ_ONLY = {"init", "user", "authenticate", "users", "validate", "versions", "start_form", "show", "history", "tasks",
             "task", "incidents", "outbox", "portal_entries", "queue", "requests", "process_xml", "dependencias",
             "processes", "version_history", "version_xml", "version_diff", "draft", "migration_preview",
             "running_instances", "deploy_preview",
             "audit_verify", "audit_heads", "audit_search", "replay", "replay_verify", "export", "indicators",
             "worker"}


def test_the_auditor_role_cannot_change_anything(driver, engine):
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    auditor = driver.user("auditor")
    mutations = _mutations(engine, driver, iid, task["id"])
    public = {name for name in dir(engine) if not name.startswith("_") and callable(getattr(engine, name))}
    assert public - READ_ONLY == set(mutations), "clasifique los métodos nuevos del Engine"
    before = _rows(engine, iid)
    for name, call in mutations.items():
        with pytest.raises(NotAllowed):
            call(auditor)
    assert _rows(engine, iid) == before
    # and reads everything, of every dependencia
    other = driver.start("sol_otra", nombre_servicio="Becas")
    assert engine.show(auditor, other)["dependencia"] == "Secretaría de Educación"
    assert engine.audit_search(auditor)["total"] == 2


def test_the_auditor_is_refused_by_every_mutating_cli_command(driver, engine):
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    data = json.dumps({"nombre_servicio": "X", "ubicacion": "https://x.gob.mx", "dependencia": "Secretaría de Salud"})
    for args in (["start", "PSDT05", "--user", "auditor", "--data", data],
                 ["complete", task["id"], "--user", "auditor"],
                 ["deploy", "--user", "auditor"],
                 ["migrate", str(iid), "--to-version", "1", "--user", "auditor"]):
        result = motor_cli(engine, *args)
        assert result.returncode == 4, (args, result.stdout, result.stderr)
    assert driver.pending(iid) == ["Task_2_Registra"]
