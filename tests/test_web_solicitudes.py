"""Starting a request (solicitante, or Mesa de Ayuda for a phone request) and
the list of requests with where each one waits."""
import re

from web_fixtures import make_app

URL = "https://citas.salud.example/agenda"


def _new(client, **data):
    return client.post("/solicitudes/nueva", data={"nombre_servicio": "Citas médicas", "ubicacion": URL, **data})


def test_a_solicitante_requests_for_its_own_dependencia(client, login, engine):
    login("sol")
    page = client.get("/solicitudes/nueva").get_data(as_text=True)
    assert re.search(r'name="dependencia" value="Secretaría de Salud"\s+type="text"\s+disabled', page)
    assert re.search(r'<select id="campo-canal" name="canal"\s+disabled', page)
    response = _new(client, dependencia="Secretaría de Educación", canal="telefono")  # tampered: ignored
    assert response.status_code == 302
    iid = int(response.headers["Location"].rsplit("/", 1)[1])
    shown = engine.show(engine.user("mesa"), iid)
    assert shown["dependencia"] == "Secretaría de Salud"
    assert shown["data"]["canal"] == "web" and shown["data"]["solicitado_por"] == "sol"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Solicitud número {iid} registrada" in page


def test_mesa_de_ayuda_registers_a_phone_request_for_a_dependencia(client, login, engine):
    login("mesa")
    page = client.get("/solicitudes/nueva").get_data(as_text=True)
    assert '<datalist id="campo-dependencia-opciones">' in page and '<option value="Secretaría de Educación">' in page
    assert '<option value="telefono" >Teléfono</option>' in page
    response = _new(client, dependencia="Secretaría de Educación", canal="telefono")
    assert response.status_code == 302
    iid = int(response.headers["Location"].rsplit("/", 1)[1])
    shown = engine.show(engine.user("mesa"), iid)
    assert shown["dependencia"] == "Secretaría de Educación" and shown["data"]["canal"] == "telefono"
    assert [t["element_id"] for t in engine.tasks(engine.user("mesa"), instance_id=iid)] == ["Task_2_Registra"]


def test_invalid_request_shows_messages_and_creates_nothing(client, login, engine):
    login("mesa")
    response = client.post("/solicitudes/nueva", data={"dependencia": "", "nombre_servicio": "Citas",
                                                       "ubicacion": "citas.salud", "canal": "fax"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    errors = dict(re.findall(r'<small class="error-campo" id="campo-(\w+)-error">([^<]+)</small>', body))
    assert errors["dependencia"] == "Este campo es obligatorio"
    assert errors["ubicacion"].startswith("Escriba una dirección web válida")
    assert errors["canal"].startswith("Seleccione una de las opciones")
    assert 'value="citas.salud"' in body and 'value="Citas"' in body
    assert engine.requests(engine.user("mesa"))["total"] == 0


def test_only_solicitantes_and_mesa_de_ayuda_start_requests(client, login):
    for user in ("ge", "director", "auditor", "analista", "admin"):
        login(user)
        assert client.get("/solicitudes/nueva").status_code == 403, user
        assert _new(client, dependencia="X").status_code == 403, user
        assert "Nueva solicitud" not in client.get("/tareas").get_data(as_text=True), user


def test_my_requests_show_status_and_where_each_waits(client, login, engine, driver):
    first = driver.start()
    second = driver.start(nombre_servicio="Becas en línea")
    driver.through_publication(first)
    other = driver.start("sol_otra", nombre_servicio="Inscripciones")
    login("sol")
    body = client.get("/solicitudes").get_data(as_text=True)
    assert "Secretaría de Salud · 2 en total" in body
    assert "Inscripciones" not in body
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    assert "Becas en línea" in rows[1] and "2. Registra datos y canaliza la orden de servicio" in rows[1]
    assert "Citas médicas en línea" in rows[2] and "5.1 Prueba la solución" in rows[2] and "OS-20" in rows[2]
    assert "Orden abierta" in rows[2] or "Orden publicada" in rows[2]
    assert f"/instancias/{second}" in rows[1]
    login("mesa")
    everyone = client.get("/solicitudes").get_data(as_text=True)
    assert "3 en total" in everyone and "Inscripciones" in everyone
    only = client.get("/solicitudes?dependencia=Secretar%C3%ADa+de+Educaci%C3%B3n").get_data(as_text=True)
    assert "1 en total" in only and "Inscripciones" in only and f"/instancias/{other}" in only
    assert "Citas médicas" not in client.get("/solicitudes?estado=completada").get_data(as_text=True)


def test_requests_are_paginated(engine, login, driver):
    client = make_app(engine, WEB_PAGE_SIZE=2).test_client()
    for i in range(5):
        driver.start(nombre_servicio=f"Servicio {i}")
    login("sol", client)
    one = client.get("/solicitudes").get_data(as_text=True)
    assert "Página 1 de 3" in one and "Servicio 4" in one and "Servicio 2" not in one
    three = client.get("/solicitudes?pagina=3").get_data(as_text=True)
    assert "Servicio 0" in three and "Siguiente" not in three
