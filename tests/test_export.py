"""Exports of the history: XES (IEEE 1849-2016) and CSV, for one instance, a
search, or everything; streamed in chunks. SQLite and PostgreSQL."""
import csv
import io
import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from test_audit import motor_cli
from test_paths import _finish_satisfied

from motor import events as events_mod
from motor.db import events
from motor.engine import SYSTEM
from motor.errors import InvalidData, NotAllowed
from motor.export import Filters
from motor.xmlparse import parse_xml

NS = "{http://www.xes-standard.org/}"


@pytest.fixture
def history(driver):
    """Instance a: closed (happy path); b: another dependencia, open at 2."""
    a = driver.start()
    driver.through_publication(a)
    _finish_satisfied(driver, a)
    b = driver.start("sol_otra", nombre_servicio="Becas en línea")
    return a, b


def _events(engine, iid):
    with engine.db.read() as conn:
        return [dict(r) for r in conn.execute(select(events).where(events.c.instance_id == iid)
                                              .order_by(events.c.seq)).mappings()]


def _attrs(node):
    return {child.get("key"): child.get("value") for child in node if child.tag != f"{NS}event"}


def _xes(engine, filters=None):
    return parse_xml("".join(engine.export(SYSTEM, "xes", filters)).encode("utf-8")).getroot()


def test_xes_is_well_formed_and_has_exactly_the_expected_traces_and_events(engine, history):
    a, b = history
    root = _xes(engine)
    assert root.tag == f"{NS}log" and root.get("xes.version") == "1849-2016"
    assert {(e.get("prefix"), e.get("uri")) for e in root.findall(f"{NS}extension")} == {
        ("concept", "http://www.xes-standard.org/concept.xesext"), ("time", "http://www.xes-standard.org/time.xesext"),
        ("org", "http://www.xes-standard.org/org.xesext"),
        ("lifecycle", "http://www.xes-standard.org/lifecycle.xesext")}
    traces = root.findall(f"{NS}trace")
    shown_a = engine.show(SYSTEM, a)
    assert [_attrs(t)["concept:name"] for t in traces] == [shown_a["folio"], str(b)]  # b has no folio yet
    assert _attrs(traces[1])["dependencia"] == "Secretaría de Educación"
    for trace, iid in zip(traces, (a, b)):
        stored = _events(engine, iid)
        got = [_attrs(e) for e in trace.findall(f"{NS}event")]
        assert [int(e["seq"]) for e in got] == [r["seq"] for r in stored]
        assert [e["tipo"] for e in got] == [r["type"] for r in stored]
        for e, r in zip(got, stored):
            assert e["concept:name"] == (r["element_name"] or r["element_id"] or r["type"])
            assert datetime.fromisoformat(e["time:timestamp"]).replace(tzinfo=None) == r["created_at"].replace(
                microsecond=r["created_at"].microsecond // 1000 * 1000)
            assert e.get("org:resource") == r["username"]
            assert e["lifecycle:transition"] in {"start", "complete", "assign", "reassign", "suspend", "resume"}
    by_element = {(e["tipo"], e.get("elemento")): e for e in (_attrs(x) for x in traces[0].iter(f"{NS}event"))}
    assert by_element[("task_ready", "Task_2_Registra")]["lifecycle:transition"] == "start"
    confirm = by_element[("task_completed", "Task_5_1_Confirma")]
    assert confirm["lifecycle:transition"] == "complete"
    assert confirm["org:resource"] == "sol" and confirm["org:role"] == "solicitante"
    assert by_element[("task_completed", "Task_2_Registra")]["org:role"] == "mesa_ayuda"
    assert "org:resource" not in by_element[("service_task_executed", "Task_2_1_LevantaOrden")]


def test_xes_of_one_instance_and_of_a_search(engine, history):
    a, b = history
    folio = engine.show(SYSTEM, a)["folio"]
    for filters, expected in (({"instance": b}, [str(b)]), ({"folio": folio[-5:]}, [folio]),
                              ({"dependencia": "Secretaría de Educación"}, [str(b)]),
                              ({"estado": "completada"}, [folio]), ({"version": 1}, [folio, str(b)]),
                              ({"version": 2}, []), ({"desde": date.today() - timedelta(days=400),
                                                      "hasta": date.today() - timedelta(days=300)}, []),
                              ({"desde": date.today() - timedelta(days=1)}, [folio, str(b)])):
        traces = _xes(engine, filters).findall(f"{NS}trace")
        assert [_attrs(t)["concept:name"] for t in traces] == expected, filters


def test_xes_escapes_what_users_typed(driver, engine):
    iid = driver.start(nombre_servicio='Pagos <"urgentes"> & más')
    with engine.db.transaction() as conn:
        events_mod.append(conn, iid, [{"type": "mail_sent", "element_name": "línea 1\nlínea 2 \x07 <b>"}])
    root = _xes(engine)
    names = [_attrs(e)["concept:name"] for e in root.iter(f"{NS}event")]
    assert names[-1] == "línea 1\nlínea 2  <b>"


def test_csv_has_one_row_per_event(engine, history):
    a, b = history
    text = "".join(engine.export(SYSTEM, "csv"))
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    stored = _events(engine, a) + _events(engine, b)
    assert len(rows) == len(stored)
    assert [(int(r["instancia"]), int(r["seq"]), r["tipo"], r["hash"]) for r in rows] == [
        (r["instance_id"], r["seq"], r["type"], r["hash"]) for r in stored]
    confirm = next(r for r in rows if r["tipo"] == "task_completed" and r["elemento_id"] == "Task_5_1_Confirma")
    assert confirm["usuario"] == "sol" and confirm["rol"] == "solicitante" and confirm["transicion"] == "complete"
    assert json.loads(confirm["datos"])["form"]["satisfecho"] is True
    assert {r["folio"] for r in rows if int(r["instancia"]) == a} == {engine.show(SYSTEM, a)["folio"]}
    only_b = list(csv.DictReader(io.StringIO("".join(engine.export(SYSTEM, "csv", {"instance": b}))[1:])))
    assert {r["instancia"] for r in only_b} == {str(b)} and len(only_b) == len(_events(engine, b))


def test_large_exports_stream_in_chunks(driver, engine):
    iid = driver.start()
    with engine.db.transaction() as conn:
        for n in range(6):
            events_mod.append(conn, iid, [{"type": "mail_sent", "data": {"n": n, "i": i}} for i in range(250)])
    total = len(_events(engine, iid))
    for fmt in ("xes", "csv"):
        stream = engine.export(SYSTEM, fmt)
        assert iter(stream) is stream  # a generator: nothing is read until consumed
        chunks = list(stream)
        assert len(chunks) >= total // 500
        assert max(len(c) for c in chunks) < len("".join(chunks)) / 2
    assert len(_xes(engine).findall(f"{NS}trace/{NS}event")) == total


def test_cli_export_to_a_file_with_filters(engine, history, tmp_path):
    a, b = history
    out = tmp_path / "historial.xes"
    result = motor_cli(engine, "export", "xes", str(out), "--dependencia", "Secretaría de Educación")
    assert result.returncode == 0, result.stderr
    traces = parse_xml(out.read_bytes()).getroot().findall(f"{NS}trace")
    assert [_attrs(t)["instancia"] for t in traces] == [str(b)]
    csv_out = tmp_path / "historial.csv"
    assert motor_cli(engine, "export", "csv", str(csv_out), "--instance", str(a)).returncode == 0
    assert len(csv_out.read_text(encoding="utf-8-sig").splitlines()) == 1 + len(_events(engine, a))
    bad = motor_cli(engine, "export", "csv", str(csv_out), "--desde", "ayer")
    assert bad.returncode == 3 and "desde" in bad.stderr


def test_filters_are_validated_and_exports_are_for_auditors(driver, engine):
    with pytest.raises(InvalidData) as err:
        Filters.parse({"desde": "2026-02-30", "estado": "cerrada", "version": "uno", "color": "rojo"})
    assert set(err.value.fields) == {"desde", "estado", "version", "color"}
    with pytest.raises(InvalidData):
        Filters.parse({"desde": "2026-03-01", "hasta": "2026-02-01"})
    assert Filters.parse({"folio": " OS-2026 ", "version": "2"}).as_args() == {"folio": "OS-2026", "version": 2}
    for name in ("sol", "mesa", "ge", "director"):
        with pytest.raises(NotAllowed):
            engine.export(driver.user(name), "xes")
    with pytest.raises(InvalidData):
        engine.export(driver.user("auditor"), "pdf")


def test_search_pages_and_counts(driver, engine, history):
    a, b = history
    auditor = driver.user("auditor")
    found = engine.audit_search(auditor, {"folio": engine.show(SYSTEM, a)["folio"].lower()})
    assert found["total"] == 1 and found["items"][0]["id"] == a
    assert found["items"][0]["eventos"] == len(_events(engine, a)) and found["items"][0]["orden_estado"] == "cerrada"
    page = engine.audit_search(auditor, limit=1)
    assert page["total"] == 2 and [i["id"] for i in page["items"]] == [b]
    assert engine.audit_search(auditor, {"folio": "%"})["total"] == 0  # LIKE wildcards are literal
