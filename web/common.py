"""Small helpers shared by the blueprints: the engine, the acting user,
pagination, safe redirects, and the Jinja filters (dates in es-MX)."""
from datetime import datetime, timezone
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, request
from flask_login import current_user
from flask_wtf import CSRFProtect

from motor.forms import is_web_url
from motor.roles import ROLES

csrf = CSRFProtect()

STATUS = {"en_curso": "En curso", "completada": "Completada"}
ORDEN = {"abierta": "Abierta", "publicada": "Publicada", "cerrada": "Cerrada"}
PROCESOS = {"PSDT05": "PSDT-05 Integración de servicios", "PSDT07": "PSDT-07 Monitoreo del Portal"}
EVENTOS = {
    "instance_created": "Solicitud registrada",
    "task_ready": "Tarea disponible",
    "task_claimed": "Tarea tomada",
    "task_released": "Tarea liberada",
    "task_completed": "Tarea completada",
    "service_task_ready": "Tarea automática en cola",
    "service_task_executed": "Tarea automática ejecutada",
    "element_completed": "Paso completado",
    "gateway_decision": "Decisión",
    "call_activity_entered": "Inicia el subproceso",
    "call_activity_left": "Regresa del subproceso",
    "timer_waiting": "En espera programada",
    "incident": "Incidente",
    "incident_retried": "Incidente reintentado",
    "mail_sent": "Correo enviado",
    "instance_completed": "Procedimiento terminado",
}


def motor():
    """The Engine this app talks to (the only door into the workflow)."""
    return current_app.extensions["motor"]


def actor():
    """The signed-in motor.users.User, or None."""
    return current_user.user if current_user.is_authenticated else None


def page_number():
    try:
        return max(1, int(request.args.get("pagina", 1)))
    except ValueError:
        return 1


def safe_next(target, default="/tareas"):
    """Only same-site relative paths ("/x?y"), never "//host", "http:" or "\\"."""
    if not target or not isinstance(target, str):
        return default
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def parse_iso(value):
    """The engine's "2025-01-31T12:00:00Z" (UTC) as an aware datetime."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _zone():
    try:
        return ZoneInfo(current_app.config["WEB_TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def fecha(value, con_hora=True):
    moment = parse_iso(value)
    if moment is None:
        return "—"
    local = moment.astimezone(_zone())
    return local.strftime("%d/%m/%Y %H:%M" if con_hora else "%d/%m/%Y")


def antiguedad(value):
    """'hace 5 min', 'hace 3 h', 'hace 4 días'."""
    moment = parse_iso(value)
    if moment is None:
        return "—"
    seconds = max(0, (datetime.now(timezone.utc) - moment).total_seconds())
    if seconds < 60:
        return "hace un momento"
    if seconds < 3600:
        return f"hace {int(seconds // 60)} min"
    if seconds < 86400:
        return f"hace {int(seconds // 3600)} h"
    days = int(seconds // 86400)
    return "hace 1 día" if days == 1 else f"hace {days} días"


def contar(value, cap):
    """A capped count from Engine.queue: exact up to the cap, then 'más de N'."""
    if value is None:
        return "—"
    return f"más de {cap:,}" if value > cap else f"{value:,}"


def register_filters(app):
    app.jinja_env.filters.update(
        fecha=fecha, antiguedad=antiguedad, contar=contar,
        rol=lambda code: ROLES.get(code, code),
        estado=lambda code: STATUS.get(code, code or "—"),
        estado_orden=lambda code: ORDEN.get(code, code or "—"),
        evento=lambda code: EVENTOS.get(code, code),
        proceso=lambda code: PROCESOS.get(code, code),
    )
    app.jinja_env.tests["url_web"] = lambda value: isinstance(value, str) and is_web_url(value)
    app.jinja_env.globals.update(ROLES=ROLES, PROCESOS=PROCESOS, actor=actor)


def security_headers(response):
    """Defence in depth: no framing, no sniffing, scripts only from this site."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith(("/api/", "/tareas", "/solicitudes", "/instancias", "/admin")):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
