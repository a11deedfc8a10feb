"""Shared fixtures: a real database (SQLite, and PostgreSQL in a fresh schema),
an engine with the procedure deployed and one user per role, and real loopback
servers for the portal and the services it links to."""
import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from motor.config import PROJECT_ROOT, Config
from motor.db import Database
from motor.engine import SYSTEM, Engine

from support import Driver, portal_server

PG_URL = os.environ.get("MOTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
DEPENDENCIA = "Secretaría de Salud"


def _postgres_available():
    try:
        eng = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return True
    except Exception as exc:  # any failure means: no server here
        return exc


def pytest_report_header(config):
    ok = _postgres_available()
    return f"PostgreSQL tests: {'enabled (' + PG_URL + ')' if ok is True else 'SKIPPED: ' + str(ok)[:120]}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    yield from _make_database(request.param, tmp_path)


@pytest.fixture
def sqlite_database(tmp_path):
    yield from _make_database("sqlite", tmp_path)


def _make_database(kind, tmp_path):
    if kind == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'motor.db'}")
        yield db
        db.dispose()
        return
    available = _postgres_available()
    if available is not True:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true: {available}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {available}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    db = Database(PG_URL, schema=schema)
    yield db
    db.dispose()
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def make_config(db, portal_url, **overrides):
    cfg = Config(database_url=str(db.url), portal_url=portal_url)
    cfg.constants = {"ESPERA_REVERIFICACION": "PT0S"}
    cfg.retry_base_seconds = 0
    cfg.max_attempts = 3
    cfg.http_timeout = 3
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def deploy_and_seed(engine):
    engine.init()
    engine.deploy(SYSTEM, [(f"procesos/{p.name}", p.read_bytes()) for p in sorted((PROJECT_ROOT / "procesos").glob("*.bpmn"))])
    engine.add_user(SYSTEM, "sol", ["solicitante"], DEPENDENCIA, "sol-clave", email="sol@salud.gob.mx")
    engine.add_user(SYSTEM, "sol_otra", ["solicitante"], "Secretaría de Educación", "x", email="sol@sep.gob.mx")
    engine.add_user(SYSTEM, "mesa", ["mesa_ayuda"], password="mesa-clave", email="mesa@sig.gob.mx")
    engine.add_user(SYSTEM, "ge", ["gobierno_electronico"], password="ge-clave", email="ge@sig.gob.mx")
    engine.add_user(SYSTEM, "director", ["director"], password="dir-clave", email="director@sig.gob.mx")
    engine.add_user(SYSTEM, "auditor", ["auditor"], password="aud-clave")


@pytest.fixture
def portal():
    """The portal page (rendered from the engine's catalog) and service URLs."""
    with portal_server() as server:
        yield server


@pytest.fixture
def make_engine(database, portal):
    """Build the engine with config overrides; the first call also deploys and seeds."""
    seeded = []

    def build(handlers=None, **overrides):
        eng = Engine(make_config(database, portal.portal_url, **overrides), db=database, handlers=handlers)
        portal.engine = eng
        if not seeded:
            deploy_and_seed(eng)
            seeded.append(eng)
        return eng
    return build


@pytest.fixture
def engine(make_engine):
    return make_engine()


@pytest.fixture
def driver(engine, portal):
    return Driver(engine, portal)


from web_fixtures import app, client, login  # noqa: E402,F401  (web app fixtures)
