"""The work queue and the task page: counts, filters, age, paging, claim and
release, generated forms, server-side validation, conflicts."""
import re
from datetime import timedelta

from flask import render_template_string
from sqlalchemy import func, select

from motor.db import events, user_task_roles, user_tasks, utcnow
from motor.forms import public_fields, with_values
from web import campos
from web_fixtures import make_app


def _start(engine, n=1, username="sol", **data):
    ids = []
    for i in range(n):
        ids.append(engine.start(engine.user(username), "PSDT05", {
            "nombre_servicio": data.get("nombre_servicio", f"Servicio {i + 1}"),
            "ubicacion": data.get("ubicacion", "https://servicios.salud.example/uno"),
            **({"dependencia": data["dependencia"]} if "dependencia" in data else {})}))
    return ids


def _task(engine, iid, username="mesa"):
    return engine.tasks(engine.user(username), instance_id=iid)[0]


def _event_count(engine, iid):
    with engine.db.read() as conn:
        return conn.execute(select(func.count()).select_from(events).where(events.c.instance_id == iid)).scalar()


def _age(engine, task_id, days):
    when = utcnow() - timedelta(days=days)
    with engine.db.transaction() as conn:
        conn.execute(user_tasks.update().where(user_tasks.c.id == task_id).values(created_at=when))
        conn.execute(user_task_roles.update().where(user_task_roles.c.task_id == task_id).values(created_at=when))


# ------------------------------------------------------------------ queue

def test_queue_lists_pending_tasks_oldest_first_with_counts(client, login, engine):
    first, second = _start(engine, 2)
    _age(engine, _task(engine, second)["id"], 5)  # the second one is older (and overdue)
    login("mesa")
    body = client.get("/tareas").get_data(as_text=True)
    rows = re.findall(r'<tr class="(vencida)?">.*?Solicitud (\d+)</a>', body, re.S)
    assert [(cls, int(iid)) for cls, iid in rows] == [("vencida", second), ("", first)]
    assert re.search(r'Todas <span class="cuenta">2</span>', body)
    assert re.search(r'Sin tomar <span class="cuenta">2</span>', body)
    assert re.search(r'Tomadas por mí <span class="cuenta">0</span>', body)
    assert "1 con más de 3 días" in body and "hace 5 días" in body and "hace un momento" in body


def test_queue_filters_by_state_and_process(client, login, engine):
    one, two = _start(engine, 2)
    engine.claim(engine.user("mesa"), _task(engine, one)["id"])
    login("mesa")
    mine = client.get("/tareas?estado=mias").get_data(as_text=True)
    assert "Solicitud 1" in mine and "Solicitud 2" not in mine and "Liberar" in mine
    free = client.get("/tareas?estado=sin_tomar").get_data(as_text=True)
    assert "Solicitud 2" in free and "Solicitud 1" not in free
    assert "Solicitud 1" not in client.get("/tareas?proceso=PSDT07").get_data(as_text=True)
    assert "Solicitud 1" in client.get("/tareas?proceso=PSDT05").get_data(as_text=True)
    # Unknown filter values fall back to everything instead of failing.
    assert client.get("/tareas?estado=raro&proceso=<x>&pagina=-3").status_code == 200


def test_queue_is_paginated(engine, login):
    client = make_app(engine, WEB_PAGE_SIZE=2).test_client()
    _start(engine, 5)
    login("mesa", client)
    one = client.get("/tareas").get_data(as_text=True)
    assert one.count('class="cola"') == 1 and "Siguiente" in one and "Anterior" not in one
    assert "Solicitud 1<" in one and "Solicitud 2<" in one and "Solicitud 3<" not in one
    three = client.get("/tareas?pagina=3").get_data(as_text=True)
    assert "Solicitud 5<" in three and "Siguiente" not in three and "Anterior" in three
    assert re.search(r'Todas <span class="cuenta">5</span>', three)


def test_claim_and_release_from_the_queue(client, login, engine):
    (iid,) = _start(engine)
    task = _task(engine, iid)
    login("mesa")
    response = client.post(f"/tareas/{task['id']}/tomar", data={"volver": "/tareas?estado=mias"})
    assert response.status_code == 302 and response.headers["Location"] == "/tareas?estado=mias"
    assert _task(engine, iid)["claimed_by"] == "mesa"
    assert "Tomó la tarea" in client.get("/tareas?estado=mias").get_data(as_text=True)
    response = client.post(f"/tareas/{task['id']}/liberar", data={"volver": "https://evil.example/"})
    assert response.headers["Location"] == "/tareas"  # never an outside redirect
    assert _task(engine, iid)["claimed_by"] is None


def test_a_task_taken_by_someone_else(client, login, engine):
    from motor.engine import SYSTEM
    (iid,) = _start(engine)
    task = _task(engine, iid)
    engine.add_user(SYSTEM, "mesa2", ["mesa_ayuda"], password="mesa2-clave")
    engine.claim(engine.user("mesa2"), task["id"])
    login("mesa")
    queue = client.get("/tareas").get_data(as_text=True)
    assert "Tomada por mesa2" in queue and ">Tomar<" not in queue
    page = client.get(f"/tareas/{task['id']}").get_data(as_text=True)
    assert "Tomada por mesa2" in page and re.search(r"<button type=\"submit\" disabled>Completar tarea", page)
    claim = client.post(f"/tareas/{task['id']}/tomar")
    assert claim.status_code == 409 and "ya fue tomada por mesa2" in claim.get_data(as_text=True)
    done = client.post(f"/tareas/{task['id']}", data={"nombre_servicio": "Otro", "ubicacion": "https://o.example/"})
    body = done.get_data(as_text=True)
    assert done.status_code == 409 and "reservada para mesa2" in body and "no se guardaron" in body
    assert "https://o.example/" in body  # what was typed is shown back
    assert _task(engine, iid)["claimed_by"] == "mesa2"


# ------------------------------------------------------------------ task page

def test_task_page_shows_context_history_diagram_and_form(client, login, engine):
    (iid,) = _start(engine, nombre_servicio="Citas médicas", ubicacion="https://citas.salud.example/")
    task = _task(engine, iid)
    login("mesa")
    body = client.get(f"/tareas/{task['id']}").get_data(as_text=True)
    assert "2. Registra datos y canaliza la orden de servicio" in body
    assert "Secretaría de Salud" in body and "Citas médicas" in body
    assert '<a href="https://citas.salud.example/" target="_blank" rel="noopener noreferrer"' in body
    assert "Solicitud registrada" in body  # short history
    data = re.search(r'<script type="application/json" id="datos-PSDT05">(.*?)</script>', body, re.S).group(1)
    import json
    diagram = json.loads(data)
    assert diagram["current"] == "Task_2_Registra" and "Task_2_Registra" in diagram["active"]
    assert diagram["xml"].startswith("<bpmn:definitions") or "<bpmn:definitions" in diagram["xml"]
    assert diagram["completed"] == ["StartEvent_1_Solicita"]
    # Form: current values, textarea for multilinea, url input, required, maxlength.
    assert re.search(r'<input id="campo-nombre_servicio" name="nombre_servicio" value="Citas médicas"\s+type="text"', body)
    assert re.search(r'name="ubicacion" value="https://citas.salud.example/"\s+type="url"', body)
    assert re.search(r'<textarea id="campo-observaciones_mesa" name="observaciones_mesa"', body)
    assert 'maxlength="150"' in body and 'class="campo requerido"' in body
    assert '<script src="/static/vendor/bpmn-navigated-viewer.production.min.js">' in body


def test_invalid_data_shows_a_message_per_field_keeps_values_and_changes_nothing(client, login, engine):
    (iid,) = _start(engine)
    task = _task(engine, iid)
    before = _event_count(engine, iid)
    login("mesa")
    response = client.post(f"/tareas/{task['id']}", data={
        "nombre_servicio": "", "ubicacion": "javascript:alert(1)", "observaciones_mesa": "x" * 2001})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    errors = dict(re.findall(r'<small class="error-campo" id="campo-(\w+)-error">([^<]+)</small>', body))
    assert errors == {"nombre_servicio": "Este campo es obligatorio",
                      "ubicacion": "Escriba una dirección web válida que inicie con http:// o https://",
                      "observaciones_mesa": "Máximo 2000 caracteres (tiene 2001)"}
    assert 'value="javascript:alert(1)"' in body and "x" * 2001 in body  # kept
    assert 'aria-invalid=true' in body and "No se guardó nada" in body
    assert _task(engine, iid)["id"] == task["id"] and _event_count(engine, iid) == before


def test_a_boolean_left_unanswered_is_required(client, login, engine, driver):
    (iid,) = _start(engine)
    driver.through_publication(iid)
    task = driver.task(iid, "mesa", "Task_5_1_Confirma")
    login("mesa")
    page = client.get(f"/tareas/{task['id']}").get_data(as_text=True)
    assert page.count('type="radio" name="satisfecho"') == 2 and "> Sí</label>" in page and "> No</label>" in page
    response = client.post(f"/tareas/{task['id']}", data={"comentarios_usuario": "Sin responder"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "Este campo es obligatorio" in body and "Sin responder" in body
    done = client.post(f"/tareas/{task['id']}", data={"satisfecho": "false", "comentarios_usuario": "No abre"})
    assert done.status_code == 302
    assert driver.pending(iid) == ["Task_7_Informa"]


def test_double_submit_shows_a_clear_conflict_and_loses_nothing(client, login, engine):
    (iid,) = _start(engine)
    task = _task(engine, iid)
    login("mesa")
    data = {"nombre_servicio": "Citas", "ubicacion": "https://citas.example/", "observaciones_mesa": "Primera vez"}
    first = client.post(f"/tareas/{task['id']}", data=data)
    assert first.status_code == 302 and first.headers["Location"] == "/tareas"
    after = _event_count(engine, iid)
    second = client.post(f"/tareas/{task['id']}", data={**data, "observaciones_mesa": "Segunda vez"})
    body = second.get_data(as_text=True)
    assert second.status_code == 409
    assert "La tarea ya no está disponible" in body and "ya fue completada" in body
    assert "Segunda vez" in body and "no se guardaron" in body
    assert _event_count(engine, iid) == after
    assert client.get(f"/tareas/{task['id']}").status_code == 409


def test_readonly_fields_are_shown_disabled_and_never_submitted(client, login, engine, driver):
    (iid,) = _start(engine)
    driver.through_publication(iid)
    driver.complete(iid, "sol", "Task_5_1_Confirma", satisfecho=True)
    task = driver.task(iid, "mesa", "Task_6_Documenta")
    login("mesa")
    body = client.get(f"/tareas/{task['id']}").get_data(as_text=True)
    assert re.search(r'name="observaciones_publicacion" value="Publicado en la sección Salud"\s+type="text"\s+disabled', body)
    response = client.post(f"/tareas/{task['id']}", data={"observaciones_publicacion": "cambiado",
                                                          "observaciones_cierre": "Cerrada"})
    assert response.status_code == 302
    completed = [e for e in driver.history(iid) if e["type"] == "task_completed"][-1]
    assert completed["data"]["form"] == {"observaciones_cierre": "Cerrada"}


def test_every_field_type_gets_its_widget(app):
    """long, date and enum do not appear in today's diagrams; the generator handles them."""
    raw = [
        {"id": "texto", "label": "Texto", "type": "string", "default": "hola", "constraints": {"minlength": "2", "maxlength": "9"},
         "properties": {}, "options": []},
        {"id": "largo", "label": "Largo", "type": "string", "default": None, "constraints": {},
         "properties": {"multilinea": "true"}, "options": []},
        {"id": "numero", "label": "Número", "type": "long", "default": "5", "constraints": {"min": "1", "max": "10", "required": None},
         "properties": {}, "options": []},
        {"id": "fecha", "label": "Fecha", "type": "date", "default": "2025-01-31", "constraints": {}, "properties": {}, "options": []},
        {"id": "opcion", "label": "Opción", "type": "enum", "default": "b", "constraints": {},
         "properties": {}, "options": [{"id": "a", "name": "Uno"}, {"id": "b", "name": "Dos"}]},
        {"id": "si_no", "label": "¿Sí?", "type": "boolean", "default": "true", "constraints": {}, "properties": {}, "options": []},
        {"id": "fijo", "label": "Fijo", "type": "string", "default": "no se cambia", "constraints": {"readonly": None},
         "properties": {}, "options": []},
    ]
    fields = with_values(public_fields(raw), {})
    with app.test_request_context():
        html = render_template_string(
            '{% from "_campos.html" import campo %}{% for f in fs %}{{ campo(f, v, e, w) }}{% endfor %}',
            fs=fields, v=campos.values_for(fields), e={"numero": "El valor máximo es 10"}, w=campos.widget)
    html = re.sub(r"\s+", " ", html)
    assert re.search(r'name="texto" value="hola" type="text" maxlength="9" minlength="2"', html)
    assert '<textarea id="campo-largo" name="largo" rows="4"' in html
    assert re.search(r'name="numero" value="5" type="number" required min="1" max="10" step="1"', html)
    assert 'aria-invalid=true' in html and "El valor máximo es 10" in html
    assert re.search(r'name="fecha" value="2025-01-31" type="date"', html)
    assert '<option value="b" selected>Dos</option>' in html and '<option value="a" >Uno</option>' in html
    assert 'name="si_no" value="true" checked' in html
    assert re.search(r'name="fijo" value="no se cambia" type="text" disabled', html)
    assert campos.collect(fields, {"texto": "x"}) == {"texto": "x", "largo": "", "numero": "", "fecha": "",
                                                       "opcion": "", "si_no": ""}


# ------------------------------------------------------------------ Engine.queue

def test_queue_shows_exactly_what_tasks_shows(engine, driver):
    """Engine.queue (the web's indexed query) and Engine.tasks agree for every user."""
    from motor.engine import SYSTEM
    a = driver.start()
    b = driver.start("sol_otra")
    c = driver.start("mesa", dependencia="Secretaría de Salud", canal="telefono")
    driver.through_publication(a)
    driver.through_publication(b)
    engine.add_user(SYSTEM, "doble", ["solicitante", "mesa_ayuda"], "Secretaría de Salud", "x")
    for name in ("sol", "sol_otra", "mesa", "ge", "director", "auditor", "doble"):
        user = engine.user(name)
        expected = [t["id"] for t in engine.tasks(user)]
        got = engine.queue(user, limit=200)
        assert [t["id"] for t in got["items"]] == expected, name
        assert got["counts"]["todas"] == len(expected), name
        assert all(t["may_work"] for t in got["items"]), name
    admin = engine.queue(SYSTEM)
    assert {t["instance"] for t in admin["items"]} == {a, b, c} and admin["counts"]["todas"] == 3
    # "doble" reaches a's 5.1 through both of its roles: listed and counted once (with b's 5.1 and c's 2).
    assert engine.queue(engine.user("doble"))["counts"]["todas"] == 3


def test_queue_counts_stop_at_the_cap(client, login, engine):
    _start(engine, 4)
    capped = engine.queue(engine.user("mesa"), count_cap=2, limit=3)
    assert capped["counts"]["todas"] == 3 and capped["count_cap"] == 2 and capped["has_more"]
    assert len(capped["items"]) == 3
    from web.common import contar
    assert contar(3, 2) == "más de 2" and contar(2, 2) == "2" and contar(1500, 2000) == "1,500"
