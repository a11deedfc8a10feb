"""Administration: incidents with "Reintentar", the outbox, users and roles."""
import re

from motor.db import jobs


def _incident(engine, driver):
    """A request whose next service task (2.1) exhausted its retries."""
    iid = driver.start()
    driver.complete(iid, "mesa", "Task_2_Registra")
    with engine.db.transaction() as conn:
        conn.execute(jobs.update().where(jobs.c.instance_id == iid).values(
            status="incidente", attempts=3, last_error="ConnectError: Sistema de Oficios <no responde>"))
    return iid, engine.incidents(engine.user("admin"))[0]["id"]


def test_admin_sees_and_retries_incidents(client, login, engine, driver):
    iid, job_id = _incident(engine, driver)
    login("admin")
    body = client.get("/admin").get_data(as_text=True)
    assert "2.1 Levanta la orden de servicio en el Sistema de Oficios" in body
    assert "ConnectError: Sistema de Oficios &lt;no responde&gt;" in body and ">Reintentar<" in body
    response = client.post(f"/admin/incidentes/{job_id}/reintentar")
    assert response.status_code == 302
    assert "se reintentará" in client.get("/admin").get_data(as_text=True)
    assert engine.incidents(engine.user("admin")) == []
    again = client.post(f"/admin/incidentes/{job_id}/reintentar")
    assert again.status_code == 409 and "no tiene un incidente abierto" in again.get_data(as_text=True)
    driver.work(iid)
    assert engine.show(engine.user("admin"), iid)["folio"]  # the retried task ran


def test_instance_page_points_admins_to_incidents(client, login, engine, driver):
    iid, _ = _incident(engine, driver)
    login("admin")
    body = client.get(f"/instancias/{iid}").get_data(as_text=True)
    assert "Incidentes abiertos" in body and "Atenderlos en Administración" in body
    login("mesa")
    body = client.get(f"/instancias/{iid}").get_data(as_text=True)
    assert "Incidentes abiertos" in body and "Atenderlos en Administración" not in body


def test_outbox_shows_delivery_status(client, login, driver):
    iid = driver.start()
    driver.complete(iid, "mesa", "Task_2_Registra")
    driver.work(iid)
    login("admin")
    body = client.get("/admin/correo").get_data(as_text=True)
    assert "ge@sig.gob.mx" in body and "integrar «Citas médicas en línea» al Portal" in body
    assert "Pendiente" in body and f"/instancias/{iid}" in body


def test_users_list_and_add(client, login, engine):
    login("admin")
    body = client.get("/admin/usuarios").get_data(as_text=True)
    assert "sol_otra" in body and "Secretaría de Educación" in body and "Jefe del Departamento de Mesa de Ayuda" in body
    response = client.post("/admin/usuarios", data={
        "usuario": "lucia", "nombre": "Lucía Pérez", "email": "lucia@salud.gob.mx",
        "dependencia": "Secretaría de Salud", "roles": ["solicitante", "auditor"], "clave": "clave-lucia"})
    assert response.status_code == 302
    user = engine.user("lucia")
    assert user.roles == {"solicitante", "auditor"} and user.dependencia == "Secretaría de Salud"
    assert engine.authenticate("lucia", "clave-lucia") is not None
    assert "Usuario lucia guardado" in client.get("/admin/usuarios").get_data(as_text=True)


def test_invalid_user_shows_messages_and_keeps_values(client, login, engine):
    login("admin")
    response = client.post("/admin/usuarios", data={"usuario": "sin dependencia", "roles": ["solicitante"],
                                                    "nombre": "Pedro"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Use letras, dígitos" in body and "Un solicitante debe pertenecer a una dependencia" in body
    assert 'value="Pedro"' in body and re.search(r'value="solicitante" checked', body)
    assert engine.user("sin dependencia") is None
    none = client.post("/admin/usuarios", data={"usuario": "pedro"})
    assert none.status_code == 400 and "Elija al menos un rol" in none.get_data(as_text=True)


def test_non_admins_never_see_administration(client, login):
    for user in ("sol", "mesa", "ge", "director", "auditor", "analista"):
        login(user)
        assert "Administración" not in client.get("/tareas").get_data(as_text=True)
        for path in ("/admin", "/admin/correo", "/admin/usuarios"):
            assert client.get(path).status_code == 403, (user, path)
        assert client.post("/admin/usuarios", data={"usuario": "x", "roles": ["admin"]}).status_code == 403
