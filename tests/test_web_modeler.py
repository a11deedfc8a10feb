"""The in-browser modeler, in Debian's chromium driven by Playwright: an
analyst opens /procesos/PSDT05/editar, renames a task in the properties
panel, saves the draft, validates and deploys it; a request started after
that shows the new name in the queue of Gobierno Electrónico, while the one
started before keeps the old name. Screenshots land in test-artifacts/."""
import time

import pytest
from playwright.sync_api import expect

from bpmn_edit import P05, set_attr
from motor.engine import SYSTEM
from test_web_e2e import VENDOR, Person, _require, browser, live  # noqa: F401 (fixtures)

NEW_NAME = "3. Publica el servicio en el Portal (versión revisada)"
OLD_NAME = "3. Realiza publicación de servicio electrónico"


def _to_task_3(engine, data):
    """A request through activity 2 by the engine's API (the worker runs in the background)."""
    iid = engine.start(engine.user("sol"), "PSDT05", data)
    [task] = engine.tasks(engine.user("mesa"), instance_id=iid)
    engine.complete(engine.user("mesa"), task["id"], {})
    return iid


def _queue_names(person, base, expected, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        person.page.goto(f"{base}/tareas")
        names = person.page.locator("table.cola").inner_text()
        if all(name in names for name in expected) or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


@pytest.mark.browser
def test_an_analyst_renames_a_task_in_the_browser_and_new_requests_use_it(browser, live):  # noqa: F811
    _require((VENDOR / "modeler.js").exists(), "falta web/static/vendor/modeler.js (ejecute sh tools/vendor.sh)")
    base, engine = live
    errors = []
    before = _to_task_3(engine, {"nombre_servicio": "Citas (antes)", "ubicacion": f"{base}/portal"})

    ana = Person(browser, base, "analista", errors, viewport=(1440, 960)).login()
    p = ana.page
    p.get_by_role("link", name="Procesos", exact=True).click()
    p.wait_for_url(f"{base}/procesos")
    ana.shot("procesos-01-lista")

    # An upload with a flaw shows the very lines of `motor validate`, and deploys nothing.
    broken = set_attr(P05, "Task_3_2_Publica", "camunda:topic", "portal.publica")
    p.set_input_files("input[name=archivos]", files=[
        {"name": "psdt05.bpmn", "mimeType": "application/xml", "buffer": broken.encode()}])
    p.get_by_role("button", name="Validar y ver cambios").click()
    [problem] = engine.validate([("procesos/psdt05.bpmn", broken.encode())])
    expect(p.locator(".problemas samp")).to_have_text(str(problem))
    ana.shot("procesos-01b-validacion-con-problemas")
    p.get_by_role("button", name="Volver a procesos").click()
    p.get_by_role("row", name="Integración de Servicios").get_by_role("button", name="Editar").click()
    p.wait_for_selector("[data-modelador][data-listo='si']")
    ana.shot("procesos-02-modelador")

    # Select activity 3 and rename it in the properties panel.
    p.locator('g.djs-element[data-element-id="Task_3_Publica"]').click()
    name = p.locator("#bio-properties-panel-name")
    assert name.input_value() == OLD_NAME
    name.fill(NEW_NAME)
    p.wait_for_selector("[data-modelador][data-cambios='si']")
    p.get_by_role("button", name="Guardar borrador").click()
    expect(p.locator("[data-estado]")).to_contain_text("Borrador guardado")
    assert engine.draft(SYSTEM, "PSDT05")["draft"]["saved_by"] == "analista"
    p.get_by_role("button", name="Validar").click()
    expect(p.locator("[data-estado]")).to_contain_text("El borrador es válido")
    ana.shot("procesos-03-modelador-validado")
    p.get_by_role("button", name="Desplegar").click()
    p.wait_for_url(f"{base}/procesos/PSDT05")
    assert "Borrador desplegado: PSDT05 versión 2." in p.locator(".aviso-exito").inner_text()
    ana.shot("procesos-04-versiones")
    xml = engine.version_xml(SYSTEM, "PSDT05", 2)["xml"]
    assert f'name="{NEW_NAME}"' in xml and "camunda:formData" in xml and "Lane_GobiernoElectronico" in xml
    # The browser modeler saved everything else as it was: forms, roles, topics, flows.
    changes = engine.version_diff(SYSTEM, "PSDT05", 1, 2)
    assert (changes["added"], changes["removed"]) == ([], [])
    assert [(c["id"], [x["field"] for x in c["changes"]]) for c in changes["changed"]] == [("Task_3_Publica", ["name"])]

    p.goto(f"{base}/procesos/PSDT05/diferencias?de=1&a=2")
    p.wait_for_selector("[data-diferencias][data-listo='si']")
    assert f"nombre: «{OLD_NAME}» → «{NEW_NAME}»" in p.locator(".lista-cambios").inner_text()
    assert p.locator('.djs-element.cambiado[data-element-id="Task_3_Publica"]').count() == 2
    ana.shot("procesos-05-diferencias")

    after = _to_task_3(engine, {"nombre_servicio": "Citas (después)", "ubicacion": f"{base}/portal"})
    ge = Person(browser, base, "ge", errors).login()
    queue = _queue_names(ge, base, [NEW_NAME, OLD_NAME])
    assert NEW_NAME in queue and OLD_NAME in queue
    ge.shot("procesos-06-cola-con-nombre-nuevo")
    tasks = {t["instance"]: (t["name"], t["version"]) for t in engine.tasks(engine.user("ge"))}
    assert tasks[after] == (NEW_NAME, 2) and tasks[before] == (OLD_NAME, 1)

    p.goto(f"{base}/procesos/PSDT05/migrar")
    p.get_by_role("button", name="Vista previa").click()
    assert "Se puede migrar" in p.locator(".resultados-migracion").inner_text()
    ana.shot("procesos-07-migrar-vista-previa")
    assert errors == []
