"""Fixtures for the web app (imported by conftest.py): an `app` over the
conftest `engine` (SQLite and PostgreSQL), its test `client`, and a `login`
helper that signs in through the real /login form."""
import re

import pytest

from motor.engine import SYSTEM
from web import create_app

PASSWORDS = {
    "sol": "sol-clave", "sol_otra": "x", "mesa": "mesa-clave", "ge": "ge-clave", "director": "dir-clave",
    "auditor": "aud-clave", "analista": "ana-clave", "admin": "admin-clave",
}
# One signed-in user per role (sol_otra: a solicitante of another dependencia).
ROLE_USERS = ["sol", "sol_otra", "mesa", "ge", "director", "auditor", "analista", "admin"]


def seed_web_users(engine):
    """The conftest seed has no admin nor analista; the web needs both."""
    engine.add_user(SYSTEM, "analista", ["analista"], password=PASSWORDS["analista"])
    engine.add_user(SYSTEM, "admin", ["admin"], password=PASSWORDS["admin"], email="admin@sig.gob.mx")


def make_app(engine, **overrides):
    config = {"TESTING": True, "ENGINE": engine, "SECRET_KEY": "clave-de-pruebas", "WTF_CSRF_ENABLED": False,
              "WEB_ENV": "testing"}
    config.update(overrides)
    return create_app(config)


def csrf_from(html):
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "la página no trae token CSRF"
    return m.group(1)


@pytest.fixture
def app(engine):
    seed_web_users(engine)
    return make_app(engine)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def login(client):
    """login("mesa") signs the test client in as that user (through /login)."""
    def sign_in(username, c=None):
        c = c or client
        c.post("/logout")
        response = c.post("/login", data={"usuario": username, "clave": PASSWORDS[username]})
        assert response.status_code == 302, f"no pudo iniciar sesión {username}: {response.status_code}"
        return c
    return sign_in
