"""The instance page: status, data, orden de servicio, monitoring, timeline and
the diagrams with markers, drawn from the instance's own definition version."""
import json
import re

import pytest

from motor.config import PROJECT_ROOT
from motor.engine import SYSTEM
from motor.errors import NotAllowed, NotFound


def _diagrams(body):
    found = re.findall(r'<script type="application/json" id="datos-(\w+)">(.*?)</script>', body, re.S)
    return {pid: json.loads(blob) for pid, blob in found}


def test_a_finished_instance_with_one_rework_loop(client, login, engine, driver):
    iid = driver.start()
    driver.through_publication(iid)
    driver.complete(iid, "sol", "Task_5_1_Confirma", satisfecho=False, comentarios_usuario="No abre")
    driver.complete(iid, "mesa", "Task_7_Informa")
    driver.work(iid)
    driver.complete(iid, "ge", "Task_8_Corrige", correccion_realizada="Liga corregida")
    driver.complete(iid, "ge", "Task_3_Publica")
    driver.work(iid)
    driver.complete(iid, "ge", "Task_4_Notifica", observaciones_publicacion="Republicado")
    driver.work(iid)
    driver.complete(iid, "sol", "Task_5_1_Confirma", satisfecho=True)
    driver.complete(iid, "mesa", "Task_6_Documenta", observaciones_cierre="Cerrada sin pendientes")
    driver.work(iid)
    login("auditor")
    body = client.get(f"/instancias/{iid}").get_data(as_text=True)
    folio = engine.show(SYSTEM, iid)["folio"]
    assert f"<h1>{folio}" in body and "Completada" in body and "Cerrada" in body
    assert "[Cierre] Cerrada sin pendientes" in body
    assert body.count("Enlace en el Portal") == 2 and body.count("Servicio responde") == 2  # two monitoring runs
    assert "Procedimiento terminado" in body and "Decisión" in body
    assert "→ 7. Informa la no satisfacción del servicio" in body  # gateway targets named
    diagrams = _diagrams(body)
    assert set(diagrams) == {"PSDT05", "PSDT07"}
    main, called = diagrams["PSDT05"], diagrams["PSDT07"]
    assert main["visits"]["Task_3_Publica"] == 2 and main["visits"]["Call_3_3_Monitoreo"] == 2
    assert main["visits"]["Gateway_5_2"] == 2 and main["visits"]["Task_7_Informa"] == 1
    assert main["visits"]["EndEvent_OrdenCerrada"] == 1 and main["active"] == []
    assert "Task_VerificaPortal" not in main["visits"] and called["visits"]["Task_VerificaPortal"] == 2
    assert 'id="diagrama-PSDT07"' in body and "bpmn-navigated-viewer.production.min.js" in body
    events = client.get(f"/instancias/{iid}?eventos=todos").get_data(as_text=True)
    assert events.count("<tr class=\"ev-") > body.count("<tr class=\"ev-")


def test_a_running_instance_marks_what_is_active(client, login, engine, driver):
    driver.portal.services["caido"] = 503
    iid = driver.start(ubicacion=driver.portal.service_url("caido"))
    driver.complete(iid, "mesa", "Task_2_Registra")
    driver.work(iid)
    driver.complete(iid, "ge", "Task_3_Publica")
    driver.work(iid)  # the service answers 503: Annex 1 for the Director
    login("director")
    body = client.get(f"/instancias/{iid}").get_data(as_text=True)
    diagrams = _diagrams(body)
    assert "Call_3_3_Monitoreo" in diagrams["PSDT05"]["active"]
    assert "Task_A1_Detecta" in diagrams["PSDT07"]["active"]
    assert diagrams["PSDT07"]["visits"]["Task_VerificaServicio"] == 1
    assert "Falló" in body
    assert "El servicio respondió 503" in body and "Pendiente" in body  # the non-conformity is open
    assert "Detecta la causa" in body and "En curso" in body


def test_the_diagram_comes_from_the_instance_version(client, login, engine, driver):
    old = driver.start()
    xml = (PROJECT_ROOT / "procesos" / "psdt05.bpmn").read_text(encoding="utf-8")
    changed = xml.replace('name="1. Solicita integración"', 'name="1. Solicita la integración (v2)"')
    assert changed != xml
    result = engine.deploy(SYSTEM, [("procesos/psdt05.bpmn", changed.encode("utf-8"))])
    assert [r["version"] for r in result if r["process_id"] == "PSDT05"] == [2]
    new = driver.start()
    login("mesa")
    old_xml = _diagrams(client.get(f"/instancias/{old}").get_data(as_text=True))["PSDT05"]["xml"]
    new_xml = _diagrams(client.get(f"/instancias/{new}").get_data(as_text=True))["PSDT05"]["xml"]
    assert "(v2)" not in old_xml and "(v2)" in new_xml
    assert engine.process_xml(engine.user("mesa"), old)["version"] == 1


def test_process_xml_checks_read_permission(engine, driver):
    iid = driver.start()
    assert engine.process_xml(engine.user("sol"), iid, "PSDT07")["process_id"] == "PSDT07"
    with pytest.raises(NotAllowed):
        engine.process_xml(engine.user("sol_otra"), iid)
    with pytest.raises(NotFound):
        engine.process_xml(engine.user("mesa"), iid, "OTRO")
    with pytest.raises(NotFound):
        engine.process_xml(engine.user("mesa"), 999999)


def test_unknown_and_foreign_instances(client, login, driver):
    iid = driver.start()
    login("sol_otra")
    response = client.get(f"/instancias/{iid}")
    assert response.status_code == 403 and "no le permite consultar esta instancia" in response.get_data(as_text=True)
    assert client.get("/instancias/424242").status_code == 404
    assert client.get("/instancias/abc").status_code == 404
