"""Sign-in and sign-out, safe `next` redirects, cookies, and the app factory's
configuration (secret key, engine from the environment)."""
import pytest

from motor.engine import SYSTEM
from web import create_app
from web.common import safe_next


def test_login_page_is_in_spanish(client):
    body = client.get("/login").get_data(as_text=True)
    assert '<html lang="es-MX">' in body and "Iniciar sesión" in body and "Contraseña" in body


def test_signing_in_and_out(client):
    response = client.post("/login", data={"usuario": "mesa", "clave": "mesa-clave"})
    assert response.status_code == 302 and response.headers["Location"] == "/tareas"
    assert "Mis tareas" in client.get("/tareas").get_data(as_text=True)
    out = client.post("/logout")
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/tareas").status_code == 302


@pytest.mark.parametrize("usuario,clave", [("mesa", "otra"), ("nadie", "mesa-clave"), ("mesa", ""), ("", "")])
def test_wrong_credentials_are_refused_with_one_message(client, usuario, clave):
    response = client.post("/login", data={"usuario": usuario, "clave": clave})
    body = response.get_data(as_text=True)
    assert response.status_code == 401 and "Usuario o contraseña incorrectos" in body
    assert f'value="{usuario}"' in body  # the user name is kept
    assert client.get("/tareas").status_code == 302


def test_a_protected_page_sends_to_login_and_back(client):
    response = client.get("/solicitudes?estado=en_curso")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    next_url = "/solicitudes?estado=en_curso"
    signed = client.post("/login", data={"usuario": "mesa", "clave": "mesa-clave", "next": next_url})
    assert signed.headers["Location"] == next_url


@pytest.mark.parametrize("target", [
    "//evil.example/x", "http://evil.example/", "https:evil.example", "/\\evil.example", "\\\\evil.example",
    "javascript:alert(1)", "evil.example", "/x\nLocation: http://evil", "", None,
])
def test_next_only_follows_same_site_paths(client, target):
    assert safe_next(target) == "/tareas"
    data = {"usuario": "mesa", "clave": "mesa-clave"}
    if target is not None:
        data["next"] = target
    assert client.post("/login", data=data).headers["Location"] == "/tareas"


@pytest.mark.parametrize("target", ["/instancias/3", "/tareas?estado=mias&pagina=2", "/portal#x"])
def test_next_keeps_relative_paths(target):
    assert safe_next(target) == target


def test_logout_needs_post(client, login):
    login("mesa")
    assert client.get("/logout").status_code == 405
    assert client.get("/tareas").status_code == 200


def test_a_deactivated_user_is_signed_out(client, login, engine):
    from motor.db import users
    login("mesa")
    with engine.db.transaction() as conn:
        conn.execute(users.update().where(users.c.username == "mesa").values(active=False))
    assert client.get("/tareas").status_code == 302


def test_session_cookie_flags(engine, app):
    from web_fixtures import make_app
    client = app.test_client()
    response = client.post("/login", data={"usuario": "mesa", "clave": "mesa-clave"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = make_app(engine, SESSION_COOKIE_SECURE=True).test_client()
    cookie = secure.post("/login", data={"usuario": "mesa", "clave": "mesa-clave"}).headers["Set-Cookie"]
    assert "Secure" in cookie


def test_session_cookie_secure_from_the_environment(engine, monkeypatch):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "1")
    app = create_app({"ENGINE": engine, "SECRET_KEY": "x"})
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_production_refuses_to_start_without_secret_key(engine, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("WEB_ENV", "production")
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"ENGINE": engine})
    monkeypatch.setenv("SECRET_KEY", "una-clave-larga-de-produccion")
    assert create_app({"ENGINE": engine}).config["SECRET_KEY"] == "una-clave-larga-de-produccion"


def test_development_generates_a_random_secret(engine, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("WEB_ENV", raising=False)
    one, two = create_app({"ENGINE": engine}), create_app({"ENGINE": engine})
    assert len(one.config["SECRET_KEY"]) >= 32 and one.config["SECRET_KEY"] != two.config["SECRET_KEY"]


def test_factory_builds_the_engine_from_the_environment(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'desde-entorno.db'}"
    monkeypatch.setenv("MOTOR_DATABASE_URL", url)
    monkeypatch.setenv("MOTOR_PORTAL_URL", "http://portal.example/portal")
    monkeypatch.setenv("SECRET_KEY", "x")
    app = create_app()
    engine = app.extensions["motor"]
    assert str(engine.db.url) == url and engine.config.portal_url == "http://portal.example/portal"
    engine.init()
    engine.add_user(SYSTEM, "ana", ["mesa_ayuda"], password="clave-ana")
    client = app.test_client()
    assert client.post("/login", data={"usuario": "ana", "clave": "clave-ana"}).status_code == 400  # CSRF is on
    override = create_app({"MOTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'otra.db'}", "SECRET_KEY": "x"})
    assert str(override.extensions["motor"].db.url).endswith("otra.db")
    engine.db.dispose()
    override.extensions["motor"].db.dispose()
