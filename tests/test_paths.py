"""The procedure end to end through the engine's service API, on SQLite and
PostgreSQL: each path ends with the orden de servicio, the portal catalog,
the outbox and the event log exactly as they should be."""
import time

from sqlalchemy import select

from support import Driver

from motor.db import no_conformidades, outbox, portal_catalog


def _outbox(engine):
    with engine.db.read() as conn:
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]


def _catalog(engine):
    with engine.db.read() as conn:
        return [dict(r) for r in conn.execute(select(portal_catalog)).mappings()]


def _types(history, *kinds):
    return [(e["type"], e["element_id"]) for e in history if e["type"] in kinds]


def _finish_satisfied(d, iid, who="sol"):
    d.close_satisfied(iid, who, comentarios_usuario="Funciona", observaciones_cierre="Sin pendientes")


def test_happy_path_closes_the_order_and_publishes_the_service(driver, engine):
    d = driver
    iid = d.start()
    assert d.pending(iid) == ["Task_2_Registra"]
    d.through_publication(iid)
    assert d.pending(iid) == ["Task_5_1_Confirma"]
    _finish_satisfied(d, iid)

    shown = d.show(iid)
    assert shown["status"] == "completada" and shown["pending_tasks"] == [] and shown["service_tasks"] == []
    orden = shown["orden_servicio"]
    assert orden["folio"] == shown["folio"] and orden["folio"].startswith("OS-20") and orden["folio"].endswith("-00001")
    assert orden["estado"] == "cerrada"
    assert orden["fecha_recepcion"] <= orden["fecha_publicacion"] <= orden["fecha_cierre"]
    assert orden["dependencia"] == "Secretaría de Salud"
    assert orden["observaciones"].splitlines() == [
        "[Registro] Solicitud recibida", "[Publicación] Publicado en la sección Salud", "[Cierre] Sin pendientes"]

    assert [(c["nombre"], c["ubicacion"]) for c in _catalog(engine)] == [
        ("Citas médicas en línea", d.portal.service_url("citas"))]
    mails = _outbox(engine)
    assert [(m["to_addrs"], m["status"]) for m in mails] == [
        ("ge@sig.gob.mx", "pendiente"),                       # 2.2
        ("mesa@sig.gob.mx", "pendiente"),                     # 4.1
        ("mesa@sig.gob.mx, sol@salud.gob.mx", "pendiente"),   # 4.2 (not the other dependencia)
    ]
    assert orden["folio"] in mails[0]["subject"]

    history = d.history(iid)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert history[0]["type"] == "instance_created" and history[-1]["type"] == "instance_completed"
    assert _types(history, "task_completed", "service_task_executed") == [
        ("task_completed", "Task_2_Registra"),
        ("service_task_executed", "Task_2_1_LevantaOrden"),
        ("service_task_executed", "Task_2_2_NotificaGE"),
        ("task_completed", "Task_3_Publica"),
        ("service_task_executed", "Task_3_2_Publica"),
        ("service_task_executed", "Task_VerificaPortal"),
        ("service_task_executed", "Task_VerificaServicio"),
        ("service_task_executed", "Task_RegistraResultado"),
        ("task_completed", "Task_4_Notifica"),
        ("service_task_executed", "Task_4_1_NotificaOficios"),
        ("service_task_executed", "Task_4_2_Observaciones"),
        ("task_completed", "Task_5_1_Confirma"),
        ("task_completed", "Task_6_Documenta"),
        ("service_task_executed", "Task_6_1_Cierra"),
    ]
    assert _types(history, "call_activity_entered", "call_activity_left") == [
        ("call_activity_entered", "Call_3_3_Monitoreo"), ("call_activity_left", "Call_3_3_Monitoreo")]
    decisions = [(e["element_id"], e["data"]["to"]) for e in history if e["type"] == "gateway_decision"]
    assert decisions == [("Gateway_Funciona", ["Task_RegistraResultado"]), ("Gateway_5_2", ["Task_6_Documenta"])]
    completed = next(e for e in history if e["type"] == "task_completed" and e["element_id"] == "Task_5_1_Confirma")
    assert completed["user"] == "sol" and completed["data"]["form"]["satisfecho"] is True
    portal_check = next(e for e in history if e["element_id"] == "Task_VerificaPortal" and e["type"] == "service_task_executed")
    assert portal_check["data"]["result"]["portal_visible"] is True


def _not_satisfied(d, iid, causas):
    d.complete(iid, "mesa", "Task_5_1_Confirma", satisfecho=False, comentarios_usuario=causas)
    d.complete(iid, "mesa", "Task_7_Informa")  # causes default to the user's comments
    d.work(iid)
    d.complete(iid, "ge", "Task_8_Corrige", correccion_realizada="Se corrigió la liga")
    d.complete(iid, "ge", "Task_3_Publica", nombre_portal="Citas médicas", ubicacion_portal=d.portal.service_url("citas"))
    d.work(iid)
    d.complete(iid, "ge", "Task_4_Notifica", observaciones_publicacion="Republicado")
    d.work(iid)


def test_not_satisfied_once_reworks_from_activity_3_then_closes(driver, engine):
    d = driver
    iid = d.start()
    d.through_publication(iid)
    _not_satisfied(d, iid, "La liga abre una página en blanco")
    _finish_satisfied(d, iid)

    shown = d.show(iid)
    assert shown["status"] == "completada" and shown["orden_servicio"]["estado"] == "cerrada"
    assert [(c["nombre"]) for c in _catalog(engine)] == ["Citas médicas"]  # updated, not duplicated
    mails = _outbox(engine)
    assert [m["subject"].split(": ", 1)[1] for m in mails] == [
        "integrar «Citas médicas en línea» al Portal", "servicio integrado al Portal",
        "observaciones de la publicación", "el servicio no fue satisfactorio",
        "servicio integrado al Portal", "observaciones de la publicación"]
    assert "La liga abre una página en blanco" in mails[3]["body"]
    history = d.history(iid)
    assert [e["data"]["to"] for e in history if e["element_id"] == "Gateway_5_2"] == [["Task_7_Informa"], ["Task_6_Documenta"]]
    assert len([e for e in history if e["type"] == "call_activity_entered"]) == 2
    assert [e for e in history if e["element_id"] == "Task_7_Informa" and e["type"] == "task_completed"][0][
        "data"]["form"]["causas_no_satisfaccion"] == "La liga abre una página en blanco"


def test_not_satisfied_twice_loops_twice_and_keeps_one_order(driver, engine):
    d = driver
    iid = d.start()
    d.through_publication(iid)
    _not_satisfied(d, iid, "No carga")
    _not_satisfied(d, iid, "Sigue sin cargar")
    _finish_satisfied(d, iid)
    shown = d.show(iid)
    assert shown["status"] == "completada"
    assert shown["orden_servicio"]["folio"].endswith("-00001")
    history = d.history(iid)
    assert len([e for e in history if e["element_id"] == "Task_8_Corrige" and e["type"] == "task_completed"]) == 2
    assert len([e for e in history if e["element_id"] == "Task_3_Publica" and e["type"] == "task_completed"]) == 3
    assert len(_outbox(engine)) == 3 + 2 * 3
    assert len(_catalog(engine)) == 1


def test_failed_monitoring_runs_annex_1_until_the_service_is_visible(make_engine, portal):
    engine = make_engine(constants={"ESPERA_REVERIFICACION": "PT1S"})
    d = Driver(engine, portal)
    d.portal.services["caido"] = 503
    iid = d.start(ubicacion=d.portal.service_url("caido"))
    d.complete(iid, "mesa", "Task_2_Registra")
    d.work(iid)
    d.complete(iid, "ge", "Task_3_Publica")  # defaults: the requested (broken) location
    d.work(iid)
    assert d.pending(iid) == ["Task_A1_Detecta"]
    with engine.db.read() as conn:
        nc = [dict(r) for r in conn.execute(select(no_conformidades)).mappings()]
    assert len(nc) == 1 and nc[0]["tipo"] == "Servicio no visible en el portal" and nc[0]["resuelta_en"] is None
    assert "503" in nc[0]["motivo"]
    # The Director works the Annex 1 treatment; only the Director sees it.
    assert engine.tasks(d.user("ge"), instance_id=iid) == []
    d.complete(iid, "director", "Task_A1_Detecta", causa_no_conformidad="El servidor de la dependencia está caído")
    d.complete(iid, "director", "Task_A1_Subsana", accion_correctiva="Se publicó la liga del servidor alterno",
               ubicacion_portal=d.portal.service_url("citas"))
    d.work(iid)
    # Republished; now waiting on the timer before verifying again.
    shown = d.show(iid)
    assert d.pending(iid) == [] and shown["next_timer_at"] is not None
    assert shown["active_elements"] == ["Call_3_3_Monitoreo", "Timer_A1_Espera"]
    time.sleep(1.1)
    d.work(iid)
    assert d.pending(iid) == ["Task_4_Notifica"]
    d.complete(iid, "ge", "Task_4_Notifica")
    d.work(iid)
    _finish_satisfied(d, iid)

    shown = d.show(iid)
    assert shown["status"] == "completada"
    assert [c["ok"] for c in shown["monitoring_checks"]] == [True, False, True, True]  # portal, servicio; again
    assert shown["no_conformidades"][0]["resuelta_en"] is not None
    assert shown["no_conformidades"][0]["causa"] == "El servidor de la dependencia está caído"
    assert [(c["ubicacion"]) for c in _catalog(engine)] == [d.portal.service_url("citas")]
    history = d.history(iid)
    assert [e["data"]["to"] for e in history if e["element_id"] == "Gateway_Funciona"] == [
        ["Task_A1_Registra"], ["Task_RegistraResultado"]]
    assert any(e["type"] == "timer_waiting" and e["element_id"] == "Timer_A1_Espera" for e in history)


def test_mesa_de_ayuda_registers_a_phone_request_for_a_dependencia(driver, engine):
    d = driver
    iid = d.start("mesa", dependencia="Secretaría de Educación", canal="telefono")
    shown = d.show(iid)
    assert shown["data"]["canal"] == "telefono" and shown["data"]["solicitado_por"] == "mesa"
    assert shown["dependencia"] == "Secretaría de Educación"
    d.through_publication(iid)
    # The dependencia's own solicitante may confirm; another dependencia's may not see it.
    assert engine.tasks(d.user("sol"), instance_id=iid) == []
    assert [t["element_id"] for t in engine.tasks(d.user("sol_otra"), instance_id=iid)] == ["Task_5_1_Confirma"]
    _finish_satisfied(d, iid, who="sol_otra")
    assert d.show(iid)["orden_servicio"]["dependencia"] == "Secretaría de Educación"
    assert d.history(iid)[0]["user"] == "mesa"
