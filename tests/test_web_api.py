"""JSON API /api/v1: the same engine calls and rules as the pages, JSON errors
with 400/401/403/404/409, session-cookie auth and the X-CSRFToken header."""


def _start(engine, username="sol"):
    iid = engine.start(engine.user(username), "PSDT05", {"nombre_servicio": "Citas",
                                                          "ubicacion": "https://citas.example/"})
    return iid, engine.tasks(engine.user("mesa"), instance_id=iid)[0]["id"]


def test_not_signed_in_is_401(client, engine):
    _, task_id = _start(engine)
    for response in (client.get("/api/v1/tareas"), client.post(f"/api/v1/tareas/{task_id}/tomar"),
                     client.get("/api/v1/instancias/1")):
        assert response.status_code == 401 and response.get_json() == {"error": "Inicie sesión para usar la API"}


def test_session_returns_the_user_and_a_csrf_token(client, login):
    login("sol")
    data = client.get("/api/v1/sesion").get_json()
    assert data["usuario"] == "sol" and data["roles"] == ["solicitante"]
    assert data["dependencia"] == "Secretaría de Salud" and len(data["csrf_token"]) > 20


def test_tasks_claim_release_complete(client, login, engine):
    iid, task_id = _start(engine)
    login("mesa")
    queue = client.get("/api/v1/tareas").get_json()
    assert queue["counts"]["todas"] == 1 and queue["items"][0]["id"] == task_id and queue["pagina"] == 1
    assert queue["items"][0]["may_work"] is True and queue["items"][0]["overdue"] is False
    task = client.get(f"/api/v1/tareas/{task_id}").get_json()
    assert [f["id"] for f in task["form"]] == ["nombre_servicio", "ubicacion", "observaciones_mesa"]
    assert task["form"][0]["value"] == "Citas"
    assert client.post(f"/api/v1/tareas/{task_id}/tomar").get_json() == {"ok": True, "tarea": task_id, "tomada_por": "mesa"}
    assert client.get("/api/v1/tareas?estado=mias").get_json()["counts"]["mias"] == 1
    assert client.post(f"/api/v1/tareas/{task_id}/liberar").status_code == 200
    bad = client.post(f"/api/v1/tareas/{task_id}/completar", json={"ubicacion": "no-es-url", "otro": 1})
    assert bad.status_code == 400
    assert bad.get_json()["fields"] == {"ubicacion": "Escriba una dirección web válida que inicie con http:// o https://",
                                        "otro": "Campo desconocido en este formulario"}
    not_json = client.post(f"/api/v1/tareas/{task_id}/completar", data="x")
    assert not_json.status_code == 400 and "_" in not_json.get_json()["fields"]
    done = client.post(f"/api/v1/tareas/{task_id}/completar", json={"observaciones_mesa": "Vía API"})
    assert done.status_code == 200 and done.get_json() == {"ok": True, "tarea": task_id, "instancia": iid}
    again = client.post(f"/api/v1/tareas/{task_id}/completar", json={})
    assert again.status_code == 409 and "ya fue completada" in again.get_json()["error"]


def test_claimed_by_another_is_409(client, login, engine):
    _, task_id = _start(engine)
    from motor.engine import SYSTEM
    engine.add_user(SYSTEM, "mesa2", ["mesa_ayuda"], password="x")
    engine.claim(engine.user("mesa2"), task_id)
    login("mesa")
    assert client.post(f"/api/v1/tareas/{task_id}/tomar").status_code == 409
    assert client.post(f"/api/v1/tareas/{task_id}/liberar").status_code == 409
    assert client.post(f"/api/v1/tareas/{task_id}/completar", json={}).status_code == 409


def test_start_and_show_instances(client, login, engine):
    login("sol")
    created = client.post("/api/v1/instancias", json={"datos": {"nombre_servicio": "Becas",
                                                                "ubicacion": "https://becas.example/"}})
    assert created.status_code == 201
    iid = created.get_json()["instancia"]
    shown = client.get(f"/api/v1/instancias/{iid}?historial=1").get_json()
    assert shown["dependencia"] == "Secretaría de Salud" and shown["history"][0]["type"] == "instance_created"
    assert "history" not in client.get(f"/api/v1/instancias/{iid}").get_json()
    invalid = client.post("/api/v1/instancias", json={"datos": {"nombre_servicio": "", "ubicacion": "x"}})
    assert invalid.status_code == 400 and set(invalid.get_json()["fields"]) == {"nombre_servicio", "ubicacion"}
    assert client.post("/api/v1/instancias", json={"proceso": "PSDT07", "datos": {}}).status_code == 403
    assert client.post("/api/v1/instancias", json={"proceso": "NOEXISTE", "datos": {}}).status_code == 404
    assert client.get("/api/v1/instancias/999999").status_code == 404
    login("sol_otra")
    forbidden = client.get(f"/api/v1/instancias/{iid}")
    assert forbidden.status_code == 403 and "error" in forbidden.get_json()
    login("ge")
    assert client.post("/api/v1/instancias", json={"datos": {}}).status_code == 403


def test_requests_listing(client, login, engine):
    _start(engine)
    _start(engine, "sol_otra")
    login("sol")
    data = client.get("/api/v1/solicitudes").get_json()
    assert data["total"] == 1 and data["items"][0]["waiting"][0]["element_id"] == "Task_2_Registra"
    login("mesa")
    assert client.get("/api/v1/solicitudes").get_json()["total"] == 2
    assert client.get("/api/v1/solicitudes?estado=otra").status_code == 400
