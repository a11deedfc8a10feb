"""Versions of a process as analysts use them, on SQLite and PostgreSQL: the
diff between two versions, instances that keep running on their own version
while new ones start on the latest, migrating running instances (preview,
apply, refusal), drafts from the browser modeler, concurrent deploys, and the
CLI subcommands."""
import json
import threading
import time

import pytest
from sqlalchemy import func, select

from bpmn_edit import P05, P07, add_field, bypass, rename, set_attr, to_service_task
from motor import cli
from motor.db import process_versions
from motor.diff import diff_xml
from motor.engine import SYSTEM
from motor.errors import Conflict, InvalidData, InvalidDiagram, NotAllowed

NAME, NAME07 = "procesos/psdt05.bpmn", "procesos/psdt07.bpmn"
# Version 2 as an analyst would make it: new fields on two user tasks.
V2 = add_field(add_field(P05, "Task_3_Publica", "seccion_portal", "Sección del Portal", required=True),
               "Task_4_Notifica", "medio_notificacion", "Medio de notificación")


def deploy(engine, text, name=NAME, user=SYSTEM):
    [row] = [r for r in engine.deploy(user, [(name, text.encode())]) if r["file"] == name]
    return row


def analista(engine):
    return engine.add_user(SYSTEM, "analista", ["analista"], password="ana-clave")


def at_task_3(d, iid):
    d.complete(iid, "mesa", "Task_2_Registra", observaciones_mesa="Recibida")
    d.work(iid)


def at_task_4(d, iid, **extra):
    at_task_3(d, iid)
    d.complete(iid, "ge", "Task_3_Publica", nombre_portal="Citas médicas en línea",
               ubicacion_portal=d.portal.service_url("citas"), **extra)
    d.work(iid)


def finish_from_4(d, iid, **extra):
    d.complete(iid, "ge", "Task_4_Notifica", observaciones_publicacion="Publicado", **extra)
    d.work(iid)
    d.complete(iid, "sol", "Task_5_1_Confirma", satisfecho=True)
    d.complete(iid, "mesa", "Task_6_Documenta")
    d.work(iid)
    assert d.show(iid)["status"] == "completada", d.pending(iid)


def form_ids(d, iid, user, element):
    return [f["id"] for f in d.task(iid, user, element)["form"]]


def events_of(d, iid, kind):
    return [e for e in d.history(iid) if e["type"] == kind]


# -- diff --------------------------------------------------------------------------
def test_diff_lists_added_removed_and_changed_elements_with_forms_roles_and_topics():
    new = rename(V2, "Task_4_Notifica", "4. Notifica la publicación")
    new = set_attr(new, "Task_2_1_LevantaOrden", "camunda:topic", "oficios.registrar_publicacion")
    new = set_attr(new, "Task_5_1_Confirma", "camunda:candidateGroups", "mesa_ayuda")
    new = bypass(new, "Task_7_1_Notifica")
    result = diff_xml(P05, new, "PSDT05")
    removed = {e["id"] for e in result["removed"]}
    assert removed == {"Task_7_1_Notifica", "Flow_7_1_a_8"}
    assert result["added"] == []
    changes = {e["id"]: {c["field"]: c for c in e["changes"]} for e in result["changed"]}
    assert changes["Task_3_Publica"]["form"]["added"] == ["seccion_portal"]
    assert changes["Task_3_Publica"]["form"]["text"] == "formulario: campos agregados: seccion_portal («Sección del Portal»)"
    assert changes["Task_4_Notifica"]["name"]["text"] == "nombre: «4. Notifica publicación» → «4. Notifica la publicación»"
    assert changes["Task_2_1_LevantaOrden"]["topic"]["text"] == "tópico: oficios.abrir_orden → oficios.registrar_publicacion"
    assert changes["Task_5_1_Confirma"]["roles"]["text"] == "roles: mesa_ayuda, solicitante → mesa_ayuda"
    assert changes["Flow_7_a_7_1"]["target"]["text"] == "destino: Task_7_1_Notifica → Task_8_Corrige"
    assert set(changes) == {"Task_3_Publica", "Task_4_Notifica", "Task_2_1_LevantaOrden", "Task_5_1_Confirma",
                            "Flow_7_a_7_1"}
    assert diff_xml(P05, P05, "PSDT05") == {"added": [], "removed": [], "changed": [],
                                            "summary": {"added": 0, "removed": 0, "changed": 0}}


def test_a_lane_change_is_a_role_change():
    moved = P05.replace("<bpmn:flowNodeRef>Task_4_Notifica</bpmn:flowNodeRef>", "").replace(
        "<bpmn:flowNodeRef>Task_7_Informa</bpmn:flowNodeRef>",
        "<bpmn:flowNodeRef>Task_7_Informa</bpmn:flowNodeRef><bpmn:flowNodeRef>Task_4_Notifica</bpmn:flowNodeRef>")
    [item] = diff_xml(P05, moved, "PSDT05")["changed"]
    texts = [c["text"] for c in item["changes"]]
    assert item["id"] == "Task_4_Notifica"
    assert texts == ["carril: «Jefe del Departamento de Gobierno Electrónico» → «Jefe del Departamento de Mesa de "
                     "Ayuda para Dependencias»", "roles: gobierno_electronico → mesa_ayuda"]


# -- versions ------------------------------------------------------------------------
def test_instances_keep_their_version_while_new_ones_start_on_the_one_with_more_fields(driver, engine):
    d = driver
    waiting = {"Task_2_Registra": d.start(), "Task_3_Publica": d.start(), "Task_4_Notifica": d.start(),
               "Task_5_1_Confirma": d.start()}
    at_task_3(d, waiting["Task_3_Publica"])
    at_task_4(d, waiting["Task_4_Notifica"])
    d.through_publication(waiting["Task_5_1_Confirma"])
    assert {iid: d.pending(iid) for iid in waiting.values()} == {iid: [el] for el, iid in waiting.items()}

    v2 = deploy(engine, V2)
    assert (v2["version"], v2["created"]) == (2, True)
    new = d.start()
    assert d.show(new)["version"] == 2

    # The old ones finish on version 1 with version 1's forms.
    old3 = waiting["Task_3_Publica"]
    assert form_ids(d, old3, "ge", "Task_3_Publica") == ["nombre_portal", "ubicacion_portal"]
    at_task_3(d, waiting["Task_2_Registra"])
    for iid in (waiting["Task_2_Registra"], old3):
        d.complete(iid, "ge", "Task_3_Publica")
        d.work(iid)
    for iid in (waiting["Task_2_Registra"], old3, waiting["Task_4_Notifica"]):
        assert form_ids(d, iid, "ge", "Task_4_Notifica") == ["observaciones_publicacion"]
        finish_from_4(d, iid)
    d.complete(waiting["Task_5_1_Confirma"], "sol", "Task_5_1_Confirma", satisfecho=True)
    d.complete(waiting["Task_5_1_Confirma"], "mesa", "Task_6_Documenta")
    d.work(waiting["Task_5_1_Confirma"])

    # The new one asks for the new fields.
    at_task_3(d, new)
    assert form_ids(d, new, "ge", "Task_3_Publica") == ["nombre_portal", "ubicacion_portal", "seccion_portal"]
    task = d.task(new, "ge", "Task_3_Publica")
    with pytest.raises(InvalidData) as info:
        engine.complete(d.user("ge"), task["id"], {})
    assert set(info.value.fields) == {"seccion_portal"}
    d.complete(new, "ge", "Task_3_Publica", seccion_portal="Salud")
    d.work(new)
    assert form_ids(d, new, "ge", "Task_4_Notifica") == ["observaciones_publicacion", "medio_notificacion"]
    finish_from_4(d, new, medio_notificacion="correo")

    assert {iid: d.show(iid)["version"] for iid in [*waiting.values(), new]} == {
        **{iid: 1 for iid in waiting.values()}, new: 2}
    history = engine.version_history(d.user("director"), "PSDT05")
    assert [(v["version"], v["running"], v["finished"], v["deployed_by"]) for v in history] == [
        (2, 0, 1, "sistema"), (1, 0, 4, "sistema")]
    assert history[0]["hash"] == v2["hash"] and len(history[0]["hash"]) == 64
    assert engine.version_xml(d.user("auditor"), "PSDT05", 1)["xml"].count("seccion_portal") == 0
    assert engine.version_xml(d.user("auditor"), "PSDT05", 2)["xml"].count("seccion_portal") == 1
    listed = {p["process_id"]: p for p in engine.processes(d.user("director"))}
    assert (listed["PSDT05"]["latest"], listed["PSDT05"]["versions"], listed["PSDT05"]["finished"]) == (2, 2, 5)


# -- migration -------------------------------------------------------------------------
def test_migration_preview_then_apply_moves_waiting_instances_to_the_new_form(driver, engine):
    d, who = driver, analista(engine)
    at3, at4, done = d.start(), d.start(), d.start()
    at_task_3(d, at3)
    at_task_4(d, at4)
    at_task_4(d, done)
    finish_from_4(d, done)
    task3 = d.task(at3, "ge", "Task_3_Publica")
    engine.claim(d.user("ge"), task3["id"])
    deploy(engine, V2)

    preview = {r["instance"]: r for r in engine.migration_preview(who, [at3, at4, done], 2)}
    assert preview[at3]["ok"] and not preview[at3]["migrated"]
    assert "PSDT05: «3. Realiza publicación de servicio electrónico» (Task_3_Publica): formulario: campos " \
           "agregados: seccion_portal («Sección del Portal»)" in preview[at3]["changes"]
    assert [a["id"] for a in preview[at3]["active"]] == ["Task_3_Publica"]
    assert preview[at4]["ok"]
    assert preview[done]["reasons"] == ["la instancia ya terminó; solo se migran instancias en curso"]
    assert d.show(at3)["version"] == 1 and events_of(d, at3, "instance_migrated") == []  # preview wrote nothing

    results = {r["instance"]: r for r in engine.migrate(who, [at3, at4], 2)}
    assert results[at3]["migrated"] and results[at4]["migrated"]
    assert d.show(at3)["version"] == 2
    task = d.task(at3, "ge", "Task_3_Publica")
    assert task["id"] == task3["id"] and task["claimed_by"] == "ge" and task["version"] == 2
    assert [f["id"] for f in task["form"]] == ["nombre_portal", "ubicacion_portal", "seccion_portal"]
    [event] = events_of(d, at3, "instance_migrated")
    assert event["user"] == "analista"
    assert (event["data"]["from_version"], event["data"]["to_version"]) == (1, 2)
    assert any("seccion_portal" in c for c in event["data"]["changes"])
    d.roundtrip(at3)

    with pytest.raises(InvalidData):
        engine.complete(d.user("ge"), task["id"], {})
    d.complete(at3, "ge", "Task_3_Publica", seccion_portal="Salud")
    d.work(at3)
    assert form_ids(d, at4, "ge", "Task_4_Notifica") == ["observaciones_publicacion", "medio_notificacion"]
    for iid in (at3, at4):
        finish_from_4(d, iid, medio_notificacion="oficio")
    again = engine.migrate(who, [at3], 2)
    assert again[0]["reasons"] == ["la instancia ya terminó; solo se migran instancias en curso"]


def test_migration_is_refused_with_a_reason_when_the_token_sits_on_a_changed_or_removed_task(driver, engine):
    d, who = driver, analista(engine)
    at3, at4 = d.start(), d.start()
    at_task_3(d, at3)
    at_task_4(d, at4)
    deploy(engine, to_service_task(P05, "Task_4_Notifica", "notificacion.observaciones"))

    results = {r["instance"]: r for r in engine.migrate(who, [at4, at3], 2)}
    assert results[at4]["reasons"] == [
        "la instancia está en «4. Notifica publicación» (Task_4_Notifica), que en la versión 2 cambió de tipo "
        "(tarea de usuario → tarea de servicio)"]
    assert results[at3]["migrated"]
    assert d.show(at4)["version"] == 1 and d.pending(at4) == ["Task_4_Notifica"]
    assert events_of(d, at4, "instance_migrated") == []
    # The migrated one follows version 2: activity 4 is now a service task.
    d.complete(at3, "ge", "Task_3_Publica")
    d.work(at3)
    assert d.pending(at3) == ["Task_5_1_Confirma"]
    assert "service_task_executed" in {e["type"] for e in d.history(at3) if e["element_id"] == "Task_4_Notifica"}

    # Version 3 removes activity 2: who is there, and who went through it, stay.
    v2_text = engine.version_xml(who, "PSDT05", 2)["xml"]
    at2, past2 = d.start(), d.start()
    at_task_3(d, past2)
    deploy(engine, bypass(v2_text, "Task_2_Registra"))
    results = {r["instance"]: r for r in engine.migration_preview(who, [at2, past2, at3, 999], 3)}
    assert results[at2]["reasons"] == [
        "la instancia está en «2. Registra datos y canaliza la orden de servicio» (Task_2_Registra), que la "
        "versión 3 eliminó"]
    assert results[past2]["reasons"] == [
        "la instancia ya pasó por «2. Registra datos y canaliza la orden de servicio» (Task_2_Registra), que "
        "la versión 3 eliminó; su historial no se podría conservar"]
    assert results[999]["reasons"] == ["No existe la instancia 999"]
    older = engine.migration_preview(who, [at3], 1)[0]
    assert older["reasons"] == ["la versión 1 es anterior a la versión 2 que usa la instancia; solo se migra a "
                                "una versión más reciente"]
    with pytest.raises(NotAllowed):
        engine.migrate(d.user("ge"), [at2], 3)


def test_an_instance_inside_psdt07_moves_to_the_new_called_version(driver, engine, portal):
    d, who = driver, analista(engine)
    iid = d.start()
    at_task_3(d, iid)
    portal.hidden = True  # the check of PSDT-07 fails: Annex 1 starts
    d.complete(iid, "ge", "Task_3_Publica")
    d.work(iid)
    assert d.pending(iid) == ["Task_A1_Detecta"]
    deploy(engine, add_field(P07, "Task_A1_Detecta", "evidencia", "Evidencia de la causa"), NAME07)

    [plan] = engine.migration_preview(who, [iid], 1)
    assert plan["ok"] and (plan["called_from"], plan["called_to"]) == ({"PSDT07": 1}, {"PSDT07": 2})
    assert plan["changes"] == ["PSDT07: «Detecta la causa por la que no se ve el enlace del servicio» "
                               "(Task_A1_Detecta): formulario: campos agregados: evidencia («Evidencia de la causa»)"]
    [done] = engine.migrate(who, [iid], 1)
    assert done["migrated"]
    assert form_ids(d, iid, "director", "Task_A1_Detecta") == ["causa_no_conformidad", "evidencia"]
    portal.hidden = False
    d.complete(iid, "director", "Task_A1_Detecta", causa_no_conformidad="Enlace oculto", evidencia="Captura")
    d.complete(iid, "director", "Task_A1_Subsana", accion_correctiva="Se hizo visible")
    d.work(iid)
    assert d.pending(iid) == ["Task_4_Notifica"]
    assert engine.process_xml(SYSTEM, iid, "PSDT07")["version"] == 2


# -- drafts ------------------------------------------------------------------------------
def test_a_draft_is_saved_validated_and_deployed_in_one_step(driver, engine):
    d, who = driver, analista(engine)
    with pytest.raises(NotAllowed):
        engine.save_draft(d.user("ge"), "PSDT05", V2)
    assert engine.draft(who, "PSDT05")["draft"] is None
    assert engine.draft(who, "PSDT05")["xml"] == engine.version_xml(who, "PSDT05", 1)["xml"]
    with pytest.raises(InvalidData):
        engine.save_draft(who, "PSDT05", "<bpmn:definitions")
    broken = set_attr(V2, "Task_3_2_Publica", "camunda:topic", "nada")
    saved = engine.save_draft(who, "PSDT05", broken)
    assert (saved["saved_by"], saved["base_version"]) == ("analista", 1)
    with pytest.raises(InvalidDiagram) as info:
        engine.deploy_draft(who, "PSDT05")
    assert [p.element_id for p in info.value.problems] == ["Task_3_2_Publica"]
    engine.save_draft(who, "PSDT05", V2)
    [result] = [r for r in engine.deploy_draft(who, "PSDT05") if r["process_id"] == "PSDT05"]
    assert (result["version"], result["created"], result["file"]) == (2, True, NAME)
    assert engine.draft(who, "PSDT05")["draft"] is None
    assert engine.version_history(who, "PSDT05")[0]["deployed_by"] == "analista"


def test_a_draft_started_before_another_deploy_is_not_deployed_silently(engine):
    who = analista(engine)
    engine.save_draft(who, "PSDT05", V2)
    deploy(engine, rename(P05, "Task_4_Notifica", "4. Notifica la publicación"))
    with pytest.raises(Conflict) as info:
        engine.deploy_draft(who, "PSDT05")
    assert "parte de la versión 1, pero la vigente ya es la 2" in info.value.message
    assert engine.deploy_draft(who, "PSDT05", allow_stale=True)[0]["version"] == 3


# -- concurrent deploys ------------------------------------------------------------------
def _race(engine, texts):
    barrier, results, errors = threading.Barrier(len(texts)), [], []

    def run(text):
        barrier.wait()
        try:
            results.append(deploy(engine, text))
        except Exception as exc:  # collected and checked below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def _stored(engine):
    with engine.db.read() as conn:
        return sorted(conn.execute(select(process_versions.c.version).where(
            process_versions.c.process_id == "PSDT05")).scalars())


def test_concurrent_deploys_of_the_same_content_create_one_version(engine):
    results, errors = _race(engine, [V2] * 6)
    assert errors == []
    assert sorted((r["version"], r["created"]) for r in results) == [(2, False)] * 5 + [(2, True)]
    assert len({r["id"] for r in results}) == 1
    assert _stored(engine) == [1, 2]


def test_concurrent_deploys_of_different_content_never_share_a_version_number(engine):
    texts = [rename(P05, "Task_4_Notifica", f"4. Notifica publicación ({n})") for n in range(4)]
    results, errors = _race(engine, texts)
    assert all(isinstance(e, Conflict) and "al mismo tiempo" in e.message for e in errors), errors
    assert len(results) + len(errors) == 4 and results
    assert _stored(engine) == list(range(1, len(results) + 2))
    with engine.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(process_versions)).scalar() == len(results) + 2


# -- CLI ----------------------------------------------------------------------------------
def test_cli_versions_diff_and_migrate(driver, engine, capsys):
    d = driver
    iid = d.start()
    at_task_3(d, iid)
    deploy(engine, V2)
    assert cli.main(["versions", "PSDT05"], engine=engine) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PSDT05 v2 ") and lines[0].endswith("sistema: 0 en curso, 0 terminadas")
    assert lines[1].endswith("sistema: 1 en curso, 0 terminadas")
    assert cli.main(["diff", "PSDT05", "1", "2"], engine=engine) == 0
    out = capsys.readouterr().out
    assert "~ Task_3_Publica (tarea de usuario) «3. Realiza publicación de servicio electrónico»" in out
    assert "    formulario: campos agregados: seccion_portal («Sección del Portal»)" in out

    assert cli.main(["migrate", str(iid), "--to-version", "2", "--preview", "--json"], engine=engine) == 0
    [plan] = json.loads(capsys.readouterr().out)
    assert plan["ok"] and not plan["migrated"] and d.show(iid)["version"] == 1
    assert cli.main(["migrate", str(iid), "--to-version", "2"], engine=engine) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"instancia {iid} (PSDT05 v1 → v2): migrada\n")
    assert d.show(iid)["version"] == 2
    assert cli.main(["migrate", str(iid), "--to-version", "2"], engine=engine) == 5
    out = capsys.readouterr().out
    assert "no se puede migrar" in out and "ya usa la versión 2" in out
    assert cli.main(["migrate", str(iid), "--to-version", "7"], engine=engine) == 5
    assert "El proceso PSDT05 no tiene versión 7" in capsys.readouterr().out


def test_a_waiting_timer_keeps_its_due_time_through_a_migration(make_engine, portal):
    from support import Driver
    engine = make_engine(constants={"ESPERA_REVERIFICACION": "PT2S"})
    d, who = Driver(engine, portal), analista(engine)
    portal.services["caido"] = 503
    iid = d.start(ubicacion=portal.service_url("caido"))
    at_task_3(d, iid)
    d.complete(iid, "ge", "Task_3_Publica")
    d.work(iid)
    d.complete(iid, "director", "Task_A1_Detecta", causa_no_conformidad="Servidor caído")
    d.complete(iid, "director", "Task_A1_Subsana", accion_correctiva="Liga alterna",
               ubicacion_portal=portal.service_url("citas"))
    d.work(iid)
    due = d.show(iid)["next_timer_at"]
    assert due is not None and d.show(iid)["active_elements"] == ["Call_3_3_Monitoreo", "Timer_A1_Espera"]
    deploy(engine, rename(P07, "Timer_A1_Espera", "Espera dos segundos"), NAME07)
    time.sleep(1.1)  # a restarted wait would end at least a second later
    [done] = engine.migrate(who, [iid], 1)
    assert done["migrated"], done
    assert d.show(iid)["next_timer_at"] == due
    d.roundtrip(iid)
    time.sleep(1.1)
    d.work(iid)
    assert d.pending(iid) == ["Task_4_Notifica"]


def test_an_instance_inside_psdt07_takes_the_new_psdt05_form_when_it_returns(driver, engine, portal):
    d, who = driver, analista(engine)
    iid = d.start()
    at_task_3(d, iid)
    portal.hidden = True
    d.complete(iid, "ge", "Task_3_Publica")
    d.work(iid)
    assert d.pending(iid) == ["Task_A1_Detecta"]
    deploy(engine, V2)
    [done] = engine.migrate(who, [iid], 2)
    assert done["migrated"] and done["called_to"] == {"PSDT07": 1}, done
    portal.hidden = False
    d.complete(iid, "director", "Task_A1_Detecta", causa_no_conformidad="Enlace oculto")
    d.complete(iid, "director", "Task_A1_Subsana", accion_correctiva="Se hizo visible")
    d.work(iid)
    assert form_ids(d, iid, "ge", "Task_4_Notifica") == ["observaciones_publicacion", "medio_notificacion"]
    finish_from_4(d, iid, medio_notificacion="correo")
    assert d.show(iid)["version"] == 2
