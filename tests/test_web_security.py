"""Who may open what (every route x every role), CSRF on every POST, escaping
of hostile text, error pages without stack traces, security headers."""
import re

import pytest
from flask_wtf.csrf import generate_csrf

from motor.errors import MotorError
from web_fixtures import ROLE_USERS, make_app

ROLES = ["anon", *ROLE_USERS]
READ_ALL = {"mesa", "ge", "director", "auditor", "analista", "admin"}
STAFF = READ_ALL
EVERYONE = {"sol", "sol_otra", *STAFF}


def expect(ok, ok_status=200, anon=302, others=403, **special):
    """Expected status per role: `ok` roles get ok_status, anon `anon`, the rest `others`."""
    table = {role: (ok_status if role in ok else others) for role in ROLE_USERS}
    table["anon"] = anon
    table.update(special)
    return table


# (method, path template, data, expected status per role). {t} is a task of Mesa
# de Ayuda (Task_2_Registra) of instance {i}, started by "sol" (Secretaría de Salud).
MATRIX = [
    ("GET", "/", None, expect(EVERYONE, 302, anon=302)),
    ("GET", "/login", None, expect(EVERYONE, 302, anon=200)),
    ("GET", "/tareas", None, expect(EVERYONE)),
    ("GET", "/tareas?estado=mias&proceso=PSDT07&pagina=2", None, expect(EVERYONE)),
    ("GET", "/tareas/{t}", None, expect({"mesa"})),
    ("GET", "/solicitudes", None, expect(EVERYONE)),
    ("GET", "/solicitudes/nueva", None, expect({"sol", "sol_otra", "mesa"})),
    ("GET", "/instancias/{i}", None, expect({"sol", *READ_ALL})),
    ("GET", "/instancias/999999", None, expect(set(), others=404)),
    ("GET", "/portal", None, expect(EVERYONE, anon=200)),
    ("GET", "/admin", None, expect({"admin"})),
    ("GET", "/admin/correo", None, expect({"admin"})),
    ("GET", "/admin/usuarios", None, expect({"admin"})),
    ("GET", "/api/v1/sesion", None, expect(EVERYONE, anon=401)),
    ("GET", "/api/v1/tareas", None, expect(EVERYONE, anon=401)),
    ("GET", "/api/v1/tareas/{t}", None, expect({"mesa"}, anon=401)),
    ("GET", "/api/v1/instancias/{i}", None, expect({"sol", *READ_ALL}, anon=401)),
    ("GET", "/api/v1/solicitudes", None, expect(EVERYONE, anon=401)),
    ("GET", "/no-existe", None, expect(set(), others=404, anon=404)),
    # POSTs last: they change state.
    ("POST", "/tareas/{t}/tomar", {}, expect({"mesa"}, 302)),
    ("POST", "/tareas/{t}/liberar", {}, expect({"mesa"}, 302)),
    ("POST", "/tareas/{t}", {"nombre_servicio": ""}, expect({"mesa"}, 400)),
    ("POST", "/solicitudes/nueva", {"dependencia": "Secretaría de Salud", "nombre_servicio": "Citas",
                                    "ubicacion": "https://citas.example/"}, expect({"sol", "sol_otra", "mesa"}, 302)),
    ("POST", "/admin/incidentes/no-existe/reintentar", {}, expect({"admin"}, 404)),
    ("POST", "/admin/usuarios", {"usuario": "nuevo", "roles": "auditor"}, expect({"admin"}, 302)),
    ("POST", "/api/v1/tareas/{t}/tomar", None, expect({"mesa"}, anon=401)),
    ("POST", "/api/v1/tareas/{t}/liberar", None, expect({"mesa"}, anon=401)),
    ("POST", "/api/v1/tareas/{t}/completar", {"nombre_servicio": ""}, expect({"mesa"}, 400, anon=401)),
    ("POST", "/api/v1/instancias", {"datos": {"dependencia": "Secretaría de Salud", "nombre_servicio": "X",
                                              "ubicacion": "https://x.example/"}},
     expect({"sol", "mesa"}, 201, anon=401)),  # sol_otra: another dependencia's request -> 403
    ("POST", "/logout", {}, expect(EVERYONE, 302, anon=302)),
]


def _start(engine, username="sol", nombre="Citas médicas en línea"):
    iid = engine.start(engine.user(username), "PSDT05", {"nombre_servicio": nombre,
                                                          "ubicacion": "https://citas.salud.example/agenda"})
    task = [t for t in engine.tasks(engine.user("mesa"), instance_id=iid)][0]
    return iid, task["id"]


# The work-queue app's areas; other areas (procesos, auditoria) have their own matrices.
AREAS = {"auth", "tareas", "solicitudes", "instancias", "portal", "admin", "api", "inicio"}


def test_the_matrix_covers_every_route(app):
    covered = {re.sub(r"\{[a-z]\}|999999|no-existe", "<x>", path.split("?")[0]) for _, path, _, _ in MATRIX}
    rules = {re.sub(r"<[^>]+>", "<x>", r.rule) for r in app.url_map.iter_rules()
             if r.endpoint.split(".")[0] in AREAS}
    assert rules - covered == set()


@pytest.mark.parametrize("role", ROLES)
def test_every_route_for_every_role(role, app, client, login, engine):
    iid, task_id = _start(engine)
    if role != "anon":
        login(role)
    wrong = []
    for method, template, data, expected in MATRIX:
        path = template.format(t=task_id, i=iid)
        if method == "GET":
            response = client.get(path)
        elif path.startswith("/api/"):
            response = client.post(path, json=data if data is not None else {})
        else:
            response = client.post(path, data=data)
        if response.status_code != expected[role]:
            wrong.append(f"{method} {template}: {response.status_code} (se esperaba {expected[role]})")
        if method == "POST" and template == "/logout" and role != "anon":
            login(role)
    assert wrong == [], f"{role}: " + "; ".join(wrong)


def test_dependencia_isolation(app, client, login, engine, driver):
    iid, _ = _start(engine)
    driver.through_publication(iid)  # now waiting at 5.1, which a solicitante may confirm
    login("sol_otra")
    assert client.get(f"/instancias/{iid}").status_code == 403
    assert client.get(f"/api/v1/instancias/{iid}").status_code == 403
    page = client.get("/tareas").get_data(as_text=True)
    assert "5.1 Prueba la solución" not in page and "Citas médicas en línea" not in page
    assert "Citas médicas en línea" not in client.get("/solicitudes").get_data(as_text=True)
    assert client.get("/solicitudes?dependencia=Secretar%C3%ADa%20de%20Salud").status_code == 403
    task = driver.task(iid, "sol", "Task_5_1_Confirma")
    assert client.get(f"/tareas/{task['id']}").status_code == 403
    assert client.post(f"/tareas/{task['id']}", data={"satisfecho": "true"}).status_code == 403
    login("sol")
    assert "5.1 Prueba la solución" in client.get("/tareas").get_data(as_text=True)


# ------------------------------------------------------------------ CSRF

@pytest.fixture
def csrf_client(engine, app):
    return make_app(engine, WTF_CSRF_ENABLED=True).test_client()


def test_every_post_route_refuses_a_missing_csrf_token(csrf_client, engine):
    iid, task_id = _start(engine)
    app = csrf_client.application
    posts = [r for r in app.url_map.iter_rules() if "POST" in r.methods]
    assert {r.rule for r in posts} >= {"/login", "/logout", "/tareas/<task_id>", "/solicitudes/nueva",
                                        "/api/v1/instancias", "/admin/usuarios"}
    for rule in posts:
        path = re.sub(r"<int:[^>]+>", str(iid), rule.rule)
        path = re.sub(r"<[^>]+>", task_id, path)
        for kwargs in ({"data": {"usuario": "mesa", "clave": "mesa-clave"}}, {"json": {}}):
            response = csrf_client.post(path, **kwargs)
            assert response.status_code == 400, f"POST {rule.rule} sin token: {response.status_code}"
            body = response.get_data(as_text=True)
            assert "CSRF" in body, body[:300]
    # Nothing happened: nobody signed in, nothing claimed.
    assert csrf_client.get("/tareas").status_code == 302
    assert engine.tasks(engine.user("mesa"), instance_id=iid)[0]["claimed_by"] is None


def test_a_valid_csrf_token_is_accepted_from_the_form_and_the_header(csrf_client, engine):
    iid, task_id = _start(engine)
    page = csrf_client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed = csrf_client.post("/login", data={"usuario": "mesa", "clave": "mesa-clave", "csrf_token": token})
    assert signed.status_code == 302
    token = csrf_client.get("/api/v1/sesion").get_json()["csrf_token"]
    assert csrf_client.post(f"/api/v1/tareas/{task_id}/tomar").status_code == 400
    claimed = csrf_client.post(f"/api/v1/tareas/{task_id}/tomar", headers={"X-CSRFToken": token})
    assert claimed.status_code == 200, claimed.get_json()
    assert engine.tasks(engine.user("mesa"), instance_id=iid)[0]["claimed_by"] == "mesa"


def test_a_token_from_another_session_is_refused(csrf_client, engine, app):
    _, task_id = _start(engine)
    with app.test_request_context():
        foreign = generate_csrf()
    page = csrf_client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    csrf_client.post("/login", data={"usuario": "mesa", "clave": "mesa-clave", "csrf_token": token})
    assert csrf_client.post(f"/tareas/{task_id}/tomar", data={"csrf_token": foreign}).status_code == 400


# ------------------------------------------------------------------ escaping

HOSTILE = "<script>alert(1)</script>"


def test_hostile_text_is_escaped_on_every_page(app, client, login, engine, driver):
    iid, task_id = _start(engine, nombre=HOSTILE)
    pages = []
    login("mesa")
    pages += [client.get("/tareas"), client.get(f"/tareas/{task_id}"), client.get(f"/instancias/{iid}"),
              client.get("/solicitudes")]
    driver.complete(iid, "mesa", "Task_2_Registra", observaciones_mesa=f'"><img src=x onerror=alert(2)>{HOSTILE}')
    driver.work(iid)
    driver.complete(iid, "ge", "Task_3_Publica", nombre_portal=HOSTILE, ubicacion_portal=driver.portal.service_url("citas"))
    driver.work(iid)
    pages += [client.get(f"/instancias/{iid}"), client.get(f"/instancias/{iid}?eventos=todos"), client.get("/portal")]
    login("admin")
    pages += [client.get("/admin/correo")]
    for response in pages:
        body = response.get_data(as_text=True)
        assert response.status_code == 200, response.request.path
        assert HOSTILE not in body and "<img src=x" not in body, response.request.path
    portal = pages[-2].get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</a>" in portal
    instance = pages[4].get_data(as_text=True)
    # The diagram data sits in a JSON script tag: nothing in it can close the tag.
    for blob in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', instance, re.S):
        assert "<" not in blob and ">" not in blob


def test_a_javascript_url_is_never_rendered_as_a_link(app, client, engine):
    from motor.db import portal_catalog, utcnow
    iid, _ = _start(engine)
    with engine.db.transaction() as conn:  # a row the engine itself would refuse
        conn.execute(portal_catalog.insert().values(instance_id=iid, dependencia="X", nombre="Malo",
                                                    ubicacion="javascript:alert(1)", publicado_en=utcnow(),
                                                    actualizado_en=utcnow()))
    body = client.get("/portal").get_data(as_text=True)
    assert "Malo" in body and "javascript:" not in body


# ------------------------------------------------------------------ errors and headers

def test_an_unexpected_error_shows_a_spanish_page_without_details(app, client, login, monkeypatch):
    login("mesa")
    engine = app.extensions["motor"]

    def boom(*args, **kwargs):
        raise RuntimeError("detalle-secreto de la base de datos")
    monkeypatch.setattr(engine, "queue", boom)
    for path in ("/tareas", "/api/v1/tareas"):
        response = client.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 500
        assert "detalle-secreto" not in body and "Traceback" not in body and "RuntimeError" not in body
        assert "error inesperado" in body


def test_an_engine_error_is_422_with_its_message(app, client, login, monkeypatch):
    login("mesa")
    engine = app.extensions["motor"]

    def fails(*args, **kwargs):
        raise MotorError("Error del motor en el elemento Gateway_5_2: la condición no se pudo evaluar")
    monkeypatch.setattr(engine, "queue", fails)
    response = client.get("/tareas")
    assert response.status_code == 422 and "Gateway_5_2" in response.get_data(as_text=True)
    api = client.get("/api/v1/tareas")
    assert api.status_code == 422 and api.get_json()["error"].startswith("Error del motor")


def test_error_pages_are_in_spanish(client):
    assert "No encontrado" in client.get("/no-existe").get_data(as_text=True)
    assert "Método no permitido" in client.get("/logout").get_data(as_text=True)
    assert client.get("/api/v1/no-existe").get_json() == {"error": "La página o el registro que busca no existe."}


def test_security_headers(client):
    response = client.get("/portal")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_pages_load_nothing_from_another_site(app, client, login, engine):
    iid, task_id = _start(engine)
    login("mesa")
    for path in ("/tareas", f"/tareas/{task_id}", f"/instancias/{iid}", "/portal", "/solicitudes/nueva"):
        body = client.get(path).get_data(as_text=True)
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', body), path
