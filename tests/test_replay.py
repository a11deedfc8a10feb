"""Replay from stored history: every path of test_paths.py reconstructs at
every step and re-executes to the same events; a hand-edited input makes
the re-execution diverge at the step it changes. SQLite and PostgreSQL."""
import inspect
import json

import pytest
from sqlalchemy import select, update

import test_paths as paths
from test_audit import _rehash_from, motor_cli

from motor import replay
from motor.db import events, instances
from motor.engine import SYSTEM
from motor.errors import NotAllowed, NotFound

PATHS = [paths.test_happy_path_closes_the_order_and_publishes_the_service,
         paths.test_not_satisfied_once_reworks_from_activity_3_then_closes,
         paths.test_not_satisfied_twice_loops_twice_and_keeps_one_order,
         paths.test_failed_monitoring_runs_annex_1_until_the_service_is_visible,
         paths.test_mesa_de_ayuda_registers_a_phone_request_for_a_dependencia]


def run_path(request, path):
    """Run one test_paths path with the fixtures it asks for; returns its engine."""
    kwargs = {name: request.getfixturevalue(name) for name in inspect.signature(path).parameters}
    path(**kwargs)
    if "engine" in kwargs:
        return kwargs["engine"]
    return kwargs["make_engine"]()


def _instance_ids(engine):
    with engine.db.read() as conn:
        return list(conn.execute(select(instances.c.id).order_by(instances.c.id)).scalars())


def _row(engine, iid, element, kind):
    with engine.db.read() as conn:
        return dict(conn.execute(select(events).where(events.c.instance_id == iid, events.c.element_id == element,
                                                      events.c.type == kind).order_by(events.c.seq)).mappings().first())


def _seq_of(engine, iid, element, kind):
    return _row(engine, iid, element, kind)["seq"]


def test_the_paths_cover_every_path_of_test_paths():
    assert {p.__name__ for p in PATHS} == {n for n in dir(paths) if n.startswith("test_")}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__[5:40])
def test_every_path_replays_at_every_step_and_reexecutes_identically(request, path, make_engine):
    engine = run_path(request, path)
    auditor = engine.user("auditor")
    for iid in _instance_ids(engine):
        result = engine.replay_verify(auditor, iid)
        assert result.ok, str(result)
        history = engine.history(SYSTEM, iid)
        assert result.compared == len([e for e in history if replay.project(e)])
        for k in range(len(history) + 1):
            state = engine.replay(auditor, iid, k)
            assert state["step"] == k and (state["event"] or {}).get("seq") == (k or None)
        shown = engine.show(SYSTEM, iid)
        final = engine.replay(auditor, iid, len(history))
        assert final["status"] == shown["status"]
        assert {a["element_id"] for a in final["active"]} == set(shown["active_elements"])
        orden = shown["orden_servicio"]
        assert final["orden"] == {"folio": orden["folio"], "estado": orden["estado"]}
        assert all(final["data"].get(k) == v for k, v in shown["data"].items() if k in final["data"])
    assert engine.audit_verify(SYSTEM).ok


def test_state_at_a_middle_step_shows_loops_tokens_flows_and_data(driver, engine):
    iid = driver.start()
    driver.through_publication(iid)
    paths._not_satisfied(driver, iid, "No abre")
    history = engine.history(SYSTEM, iid)
    k = next(e["seq"] for e in history if e["type"] == "task_completed" and e["element_id"] == "Task_8_Corrige")
    state = engine.replay(SYSTEM, iid, k)
    assert state["event"]["user"] == "ge" and state["event"]["element_id"] == "Task_8_Corrige"
    done = {(c["process_id"], c["element_id"]): c["count"] for c in state["completed"]}
    assert done[("PSDT05", "Task_3_Publica")] == 1 and done[("PSDT05", "Task_8_Corrige")] == 1
    assert done[("PSDT07", "Task_VerificaPortal")] == 1 and done[("PSDT05", "Gateway_5_2")] == 1
    assert state["active"] == []  # the step that completed 8 had not yet recorded what comes next
    after = engine.replay(SYSTEM, iid, k + 2)
    assert [(a["element_id"], a["state"]) for a in after["active"]] == [("Task_3_Publica", "lista")]
    flows = {f["flow_id"]: f["count"] for f in after["flows"]}
    assert flows["Flow_5_2_No"] == 1 and flows["Flow_8_Regresa"] == 1 and flows["Flow_Reingreso_a_3"] == 2
    assert "Flow_5_2_Si" not in flows and flows["Flow_Funciona_Si"] == 1
    assert state["data_before"].get("correccion_realizada") is None
    assert state["data"]["correccion_realizada"] == "Se corrigió la liga"
    assert state["orden"]["estado"] == "publicada" and state["orden"]["folio"].startswith("OS-")
    start = engine.replay(SYSTEM, iid, 0)
    assert start["event"] is None and start["completed"] == [] and start["data"] == {}
    assert engine.replay(SYSTEM, iid, 10_000)["step"] == len(history)


def test_a_hand_edited_handler_result_fails_reexecution_at_the_gateway(driver, engine):
    """portal_visible turned False in the stored result, and the chain re-hashed:
    the audit chain is intact, only the re-execution catches it."""
    iid = driver.start()
    driver.through_publication(iid)
    row = _row(engine, iid, "Task_VerificaPortal", "service_task_executed")
    data = {**row["data"], "result": {**row["data"]["result"], "portal_visible": False}}
    with engine.db.transaction() as conn:
        conn.execute(update(events).where(events.c.id == row["id"]).values(data=data))
    _rehash_from(engine, iid, row["seq"])
    assert engine.audit_verify(SYSTEM).ok
    result = engine.replay_verify(SYSTEM, iid)
    assert not result.ok
    assert result.seq == _seq_of(engine, iid, "Gateway_Funciona", "gateway_decision")
    assert result.expected == "gateway_decision Gateway_Funciona → Task_RegistraResultado (PSDT07)"
    assert result.got == "gateway_decision Gateway_Funciona → Task_A1_Registra (PSDT07)"

    cli = motor_cli(engine, "replay", str(iid), "--verify")
    assert cli.returncode == 1 and f"diverge en el evento {result.seq}" in cli.stdout
    as_json = json.loads(motor_cli(engine, "replay", str(iid), "--verify", "--json").stdout)
    assert as_json["ok"] is False and as_json["seq"] == result.seq


def test_a_hand_edited_user_input_fails_reexecution_at_the_decision(driver, engine):
    iid = driver.start()
    driver.through_publication(iid)
    driver.complete(iid, "sol", "Task_5_1_Confirma", satisfecho=True)
    row = _row(engine, iid, "Task_5_1_Confirma", "task_completed")
    with engine.db.transaction() as conn:
        conn.execute(update(events).where(events.c.id == row["id"]).values(
            data={"form": {**row["data"]["form"], "satisfecho": False}}))
    result = engine.replay_verify(SYSTEM, iid)
    assert result.seq == _seq_of(engine, iid, "Gateway_5_2", "gateway_decision")
    assert result.got.endswith("→ Task_7_Informa (PSDT05)")


def test_a_deleted_step_makes_the_reexecution_stop_where_the_input_is_missing(driver, engine):
    iid = driver.start()
    driver.through_publication(iid)
    row = _row(engine, iid, "Task_3_Publica", "task_completed")
    with engine.db.transaction() as conn:
        conn.execute(events.delete().where(events.c.id == row["id"]))
    result = engine.replay_verify(SYSTEM, iid)
    assert not result.ok and result.seq == row["seq"] + 1
    assert result.expected == "service_task_ready Task_3_2_Publica (PSDT05)" and result.got == "ningún evento"


def test_reexecution_calls_no_handler(driver, engine, monkeypatch):
    iid = driver.start()
    driver.through_publication(iid)
    monkeypatch.setattr(engine, "handlers", None)
    requests = len(driver.portal.requests)
    assert engine.replay_verify(SYSTEM, iid).ok
    assert len(driver.portal.requests) == requests


def test_cli_to_step_json(driver, engine):
    iid = driver.start()
    driver.complete(iid, "mesa", "Task_2_Registra")
    driver.work(iid)
    k = _seq_of(engine, iid, "Task_2_1_LevantaOrden", "service_task_executed")
    result = motor_cli(engine, "replay", str(iid), "--to-step", str(k), "--json")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["step"] == k and state["event"]["type"] == "service_task_executed"
    assert state["orden"]["estado"] == "abierta" and state["data"]["folio"] == state["orden"]["folio"]
    assert "Task_2_1_LevantaOrden" not in state["data_before"].get("folio", "")
    text = motor_cli(engine, "replay", str(iid), "--to-step", str(k))
    assert text.returncode == 0 and "completado PSDT05/Task_2_Registra ×1" in text.stdout
    assert motor_cli(engine, "replay", "999", "--verify").returncode == 1
    assert motor_cli(engine, "replay", str(iid)).returncode == 2


def test_replay_is_for_auditors(driver, engine):
    iid = driver.start()
    for name in ("sol", "mesa", "ge", "director"):
        with pytest.raises(NotAllowed):
            engine.replay(driver.user(name), iid, 1)
        with pytest.raises(NotAllowed):
            engine.replay_verify(driver.user(name), iid)
    with pytest.raises(NotFound):
        engine.replay(driver.user("auditor"), 999, 1)
