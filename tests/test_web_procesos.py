"""/procesos, the analysts' pages, through the Flask test client (SQLite and
PostgreSQL): upload, validate and deploy; versions, download and diff;
migration; the modeler's draft endpoints. Only analista and admin get in."""
import html
import io
import json
import re

import pytest

from bpmn_edit import P05, P07, add_field, set_attr
from motor.engine import SYSTEM

V2 = add_field(P05, "Task_3_Publica", "seccion_portal", "Sección del Portal")
BROKEN = set_attr(P05, "Task_3_2_Publica", "camunda:topic", "portal.publica")
PAGES = ["/procesos", "/procesos/PSDT05", "/procesos/PSDT05/diferencias", "/procesos/PSDT05/migrar",
         "/procesos/PSDT05/editar", "/procesos/PSDT05/versiones/1.bpmn"]


def text(response):
    return html.unescape(response.get_data(as_text=True))


def upload(client, *files):
    data = {"paso": "validar", "archivos": [(io.BytesIO(t.encode()), name) for name, t in files]}
    return client.post("/procesos/subir", data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("user", ["sol", "mesa", "ge", "director", "auditor"])
def test_only_analysts_and_admins_see_the_process_pages(client, login, user):
    login(user)
    for page in PAGES:
        assert client.get(page).status_code == 403, page
    assert client.post("/procesos/PSDT05/borrador", json={"xml": P05}).status_code == 403


def test_anonymous_users_are_sent_to_sign_in(client):
    assert client.get("/procesos").status_code == 302


@pytest.mark.parametrize("user", ["analista", "admin"])
def test_every_page_opens_for_analysts_and_admins(client, login, user):
    login(user)
    for page in PAGES:
        assert client.get(page).status_code == 200, page
    assert "Procesos</a>" in text(client.get("/tareas"))


def test_a_broken_upload_shows_the_cli_lines_and_deploys_nothing(client, login, engine):
    login("analista")
    response = upload(client, ("psdt05.bpmn", BROKEN))
    assert response.status_code == 400
    page = text(response)
    [expected] = engine.validate([("procesos/psdt05.bpmn", BROKEN.encode())])
    assert f"<samp>{expected}</samp>" in page
    assert "Qué hacer: escriba en «Topic» uno de los tópicos disponibles" in page
    assert 'name="paso" value="desplegar"' not in page
    assert [v["version"] for v in engine.version_history(SYSTEM, "PSDT05")] == [1]


def test_upload_previews_the_changes_then_deploys_all_files_in_one_step(client, login, engine):
    login("analista")
    raw = upload(client, ("psdt05.bpmn", V2), ("psdt07.bpmn", P07)).get_data(as_text=True)
    page = html.unescape(raw)
    assert "Los 2 archivo(s) pasan todas las validaciones." in page
    assert "Será la <strong>versión nueva</strong> del proceso (la vigente es la 1)" in page
    assert "formulario: campos agregados: seccion_portal («Sección del Portal»)" in page
    assert "Sin cambios: es idéntico a la versión 1" in page
    names = [html.unescape(v) for v in re.findall(r'name="nombre" value="([^"]+)"', raw)]
    xmls = [html.unescape(v) for v in re.findall(r'name="xml" value="([^"]*)"', raw)]
    assert names == ["procesos/psdt05.bpmn", "procesos/psdt07.bpmn"] and len(xmls) == 2
    response = client.post("/procesos/subir", data={"paso": "desplegar", "nombre": names, "xml": xmls})
    assert response.status_code == 302
    assert "Desplegado: PSDT05 versión 2." in text(client.get("/procesos"))
    history = engine.version_history(SYSTEM, "PSDT05")
    assert [(v["version"], v["deployed_by"]) for v in history] == [(2, "analista"), (1, "sistema")]
    assert engine.version_xml(SYSTEM, "PSDT05", 2)["xml"].count("seccion_portal") == 1


def test_a_non_bpmn_file_is_refused(client, login):
    login("analista")
    response = upload(client, ("notas.txt", "hola"))
    assert response.status_code == 400 and "«notas.txt» no es un archivo .bpmn" in text(response)


def test_versions_download_and_diff(client, login, engine, driver):
    driver.start()
    engine.deploy(SYSTEM, [("procesos/psdt05.bpmn", V2.encode())])
    login("analista")
    page = text(client.get("/procesos/PSDT05"))
    assert re.search(r"<strong>v2</strong> <span class=\"etiqueta exito\">vigente</span>", page)
    assert "1 instancia(s) en curso usan versiones anteriores" in page
    download = client.get("/procesos/PSDT05/versiones/1.bpmn")
    assert download.headers["Content-Disposition"] == 'attachment; filename="psdt05-v1.bpmn"'
    assert download.get_data(as_text=True) == engine.version_xml(SYSTEM, "PSDT05", 1)["xml"]
    diff = text(client.get("/procesos/PSDT05/diferencias?de=1&a=2"))
    assert "De la versión 1 a la versión 2: 0 agregado(s), 0 quitado(s), 1 cambiado(s)." in diff
    assert "formulario: campos agregados: seccion_portal («Sección del Portal»)" in diff
    data = json.loads(re.search(r'<script type="application/json" id="datos-diferencias">(.*?)</script>',
                                client.get("/procesos/PSDT05/diferencias?de=1&a=2").get_data(as_text=True), re.S).group(1))
    assert data["cambiados"] == ["Task_3_Publica"] and data["despues"]["version"] == 2
    assert client.get("/procesos/PSDT05/versiones/9.bpmn").status_code == 404
    assert client.get("/procesos/NOEXISTE").status_code == 404


def test_migration_page_previews_and_migrates_the_chosen_instances(client, login, engine, driver):
    iid = driver.start()
    engine.deploy(SYSTEM, [("procesos/psdt05.bpmn", V2.encode())])
    login("analista")
    page = text(client.get("/procesos/PSDT05/migrar"))
    assert f'name="instancia" value="{iid}"' in page and "2. Registra datos" in page
    preview = text(client.post("/procesos/PSDT05/migrar", data={"version": "2", "instancia": [str(iid)], "accion": "vista"}))
    assert "Vista previa" in preview and "Se puede migrar" in preview
    assert driver.show(iid)["version"] == 1
    done = client.post("/procesos/PSDT05/migrar", data={"version": "2", "instancia": [str(iid)], "accion": "migrar"})
    assert "Se migraron 1 de 1 instancias a la versión 2." in text(done)
    assert driver.show(iid)["version"] == 2
    again = text(client.post("/procesos/PSDT05/migrar", data={"version": "2", "instancia": [str(iid)], "accion": "migrar"}))
    assert "ya usa la versión 2" in again and "Se migraron 0 de 1" in again


def test_the_modeler_saves_validates_and_deploys_a_draft(client, login, engine):
    login("analista")
    page = client.get("/procesos/PSDT05/editar").get_data(as_text=True)
    data = json.loads(re.search(r'id="datos-modelador">(.*?)</script>', page, re.S).group(1))
    assert data["xml"] == engine.version_xml(SYSTEM, "PSDT05")["xml"] and data["csrf"]
    saved = client.post(data["urls"]["guardar"], json={"xml": BROKEN})
    assert saved.status_code == 200 and saved.json["saved_by"] == "analista" and saved.json["base_version"] == 1
    checked = client.post(data["urls"]["validar"], json={"xml": BROKEN}).json["problems"]
    assert [p["text"] for p in checked] == [str(p) for p in engine.validate([("procesos/psdt05.bpmn", BROKEN.encode())])]
    assert checked[0]["element_id"] == "Task_3_2_Publica" and checked[0]["name"] == "«3.2 Publica el servicio en el Portal de GES»"
    refused = client.post("/procesos/PSDT05/desplegar")
    assert refused.status_code == 400 and "no se desplegó" in text(refused)
    assert client.post(data["urls"]["guardar"], json={"xml": "<roto"}).status_code == 400
    assert client.post(data["urls"]["guardar"], json={"nada": 1}).json["error"] == "Los datos enviados no son válidos"
    client.post(data["urls"]["guardar"], json={"xml": V2})
    assert "Hay un borrador de <strong>analista</strong>" in text(client.get("/procesos/PSDT05"))
    assert client.post(data["urls"]["validar"], json={"xml": V2}).json == {"problems": []}
    response = client.post("/procesos/PSDT05/desplegar")
    assert response.status_code == 302
    assert "Borrador desplegado: PSDT05 versión 2." in text(client.get(response.headers["Location"]))
    assert engine.draft(SYSTEM, "PSDT05")["draft"] is None


def test_a_stale_draft_asks_before_deploying(client, login, engine):
    login("analista")
    client.post("/procesos/PSDT05/borrador", json={"xml": V2})
    engine.deploy(SYSTEM, [("procesos/psdt05.bpmn", set_attr(P05, "Task_4_Notifica", "name", "4. Notifica").encode())])
    response = client.post("/procesos/PSDT05/desplegar")
    assert response.status_code == 409 and "parte de la versión 1, pero la vigente ya es la 2" in text(response)
    assert client.post("/procesos/PSDT05/desplegar", data={"aun_asi": "si"}).status_code == 302
    assert engine.version_history(SYSTEM, "PSDT05")[0]["version"] == 3


def test_bad_numbers_in_forms_are_a_400_not_a_crash(client, login):
    login("analista")
    assert client.get("/procesos/PSDT05/diferencias?de=uno").status_code == 400
    assert client.post("/procesos/PSDT05/migrar", data={"version": "dos", "instancia": ["1"]}).status_code == 400
