"""The work-queue web app: server-rendered pages over the engine's service API.

`create_app()` only wires things together: the Engine (app.extensions["motor"]),
Flask-Login, CSRF protection, one blueprint per area and the error handlers.
No workflow logic lives here; every action is one call to `motor.engine.Engine`.
"""
import os
import secrets

from flask import Flask

from motor.config import Config
from motor.engine import Engine

from . import admin, api, auditoria, auth, errors, instancias, portal, procesos, solicitudes, tareas
from .common import csrf, register_filters, security_headers

MOTOR_KEYS = ("MOTOR_DATABASE_URL", "MOTOR_DATABASE_SCHEMA", "MOTOR_PORTAL_URL", "MOTOR_SMTP_")


def create_app(config=None):
    """Build the app. Defaults come from the environment; `config` overrides them
    (tests pass {"TESTING": True, "ENGINE": engine} to reuse an Engine)."""
    config = dict(config or {})
    app = Flask(__name__, instance_relative_config=True)
    env = os.environ
    secure = (env.get("SESSION_COOKIE_SECURE") or "").lower() in ("1", "true", "yes")
    app.config.from_mapping(
        WEB_ENV=env.get("WEB_ENV", "development"),
        SECRET_KEY=env.get("SECRET_KEY"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=1024 * 1024,
        WEB_TIMEZONE=env.get("WEB_TIMEZONE", "America/Mazatlan"),
        WEB_PAGE_SIZE=25,
        WEB_OVERDUE_DAYS=3,
    )
    engine = config.pop("ENGINE", None)
    app.config.update(config)
    _check_secret(app)

    if engine is None:
        # MOTOR_* keys in `config` override the environment for the engine too.
        environ = {**env, **{k: str(v) for k, v in app.config.items() if k.startswith(MOTOR_KEYS)}}
        engine = Engine(Config.from_env(environ))
    app.extensions["motor"] = engine

    auth.login_manager.init_app(app)
    csrf.init_app(app)
    register_filters(app)
    app.after_request(security_headers)
    for module in (auth, tareas, solicitudes, instancias, portal, admin, api, procesos, auditoria):
        app.register_blueprint(module.bp)
    errors.init_app(app)
    app.add_url_rule("/", "inicio", tareas.inicio)
    return app


def _check_secret(app):
    if app.config.get("SECRET_KEY"):
        return
    if app.config["WEB_ENV"] == "production":
        raise RuntimeError("WEB_ENV=production requiere la variable SECRET_KEY (una cadena aleatoria larga)")
    # Development and demo: a fresh key per start (sessions end on restart).
    app.config["SECRET_KEY"] = secrets.token_hex(32)
