"""The public portal catalog: no sign-in, grouped by dependencia, one plain
visible link per service whose text is exactly its name — and PSDT-07's real
check finds it over HTTP."""
import re
import threading

from werkzeug.serving import make_server

from motor.checks import check_portal
from motor.db import portal_catalog, utcnow


def _publish(engine, entries):
    with engine.db.transaction() as conn:
        for iid, (dependencia, nombre, ubicacion) in enumerate(entries, start=1):
            conn.execute(portal_catalog.insert().values(instance_id=iid, dependencia=dependencia, nombre=nombre,
                                                        ubicacion=ubicacion, publicado_en=utcnow(),
                                                        actualizado_en=utcnow()))


def _instances(driver, n):
    return [driver.start(nombre_servicio=f"S{i}") for i in range(n)]


def test_portal_is_public_and_groups_by_dependencia(client, engine, driver):
    _instances(driver, 3)
    _publish(engine, [("Secretaría de Salud", "Citas médicas en línea", "https://citas.salud.example/"),
                      ("Secretaría de Educación", "Becas", "https://becas.sep.example/solicitud?x=1&y=2"),
                      ("Secretaría de Salud", "Aclaraciones", "http://salud.example/aclara")])
    response = client.get("/portal")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Iniciar sesión" in body
    headings = re.findall(r"<h2>([^<]+)</h2>", body)
    assert headings == ["Secretaría de Educación", "Secretaría de Salud"]
    assert '<a href="https://citas.salud.example/">Citas médicas en línea</a>' in body
    assert '<a href="https://becas.sep.example/solicitud?x=1&amp;y=2">Becas</a>' in body
    assert body.index("Aclaraciones") < body.index("Citas médicas")


def test_empty_portal(client):
    assert "Todavía no hay servicios publicados" in client.get("/portal").get_data(as_text=True)


def test_psdt07_finds_the_published_link_on_this_app(app, engine, driver):
    _instances(driver, 1)
    _publish(engine, [("Secretaría de Salud", "Citas médicas en línea", "https://citas.salud.example/")])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/portal"
        found = check_portal(url, "Citas médicas en línea", "https://citas.salud.example/", timeout=5)
        assert found.ok, found.reason
        missing = check_portal(url, "Otro servicio", "https://citas.salud.example/", timeout=5)
        assert not missing.ok and "Citas médicas en línea" in missing.reason
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
