"""Error pages and JSON errors, in Spanish; no stack trace ever reaches a user.

Engine errors map to HTTP statuses:
    InvalidData -> 400, NotAllowed -> 403, NotFound -> 404, Conflict -> 409,
    any other MotorError -> 422 (the engine could not process the request, e.g.
    a diagram expression failed; its message is written for users),
    anything else -> 500 with a generic message (details only in the log).
"""
import logging

from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from motor.errors import Conflict, InvalidData, MotorError, NotAllowed, NotFound

log = logging.getLogger("web")

STATUS_FOR = {InvalidData: 400, NotAllowed: 403, NotFound: 404, Conflict: 409}
TITLES = {
    400: "Solicitud no válida",
    401: "Inicie sesión",
    403: "Acceso no permitido",
    404: "No encontrado",
    405: "Método no permitido",
    409: "Conflicto",
    413: "Envío demasiado grande",
    422: "No se pudo procesar",
    500: "Error interno",
}
MESSAGES = {
    400: "La solicitud no es válida.",
    401: "Inicie sesión para continuar.",
    403: "Su rol no le permite realizar esta acción.",
    404: "La página o el registro que busca no existe.",
    405: "Esta dirección no acepta ese método.",
    409: "El registro cambió mientras trabajaba en él.",
    413: "El envío excede el tamaño permitido.",
    422: "El motor no pudo procesar la solicitud.",
    500: "Ocurrió un error inesperado. El equipo de sistemas ya quedó notificado; intente de nuevo más tarde.",
}
CSRF_MESSAGE = ("El formulario expiró o no es válido (protección CSRF). "
                "Recargue la página e intente de nuevo.")


def status_for(exc):
    for cls, status in STATUS_FOR.items():
        if isinstance(exc, cls):
            return status
    return 422


def wants_json():
    return request.path.startswith("/api/")


def respond(status, message, fields=None, template="errores/error.html", **context):
    if wants_json():
        body = {"error": message}
        if fields:
            body["fields"] = fields
        return jsonify(body), status
    return render_template(template, status=status, titulo=TITLES.get(status, "Error"),
                           mensaje=message, campos=fields or {}, **context), status


def init_app(app):
    @app.errorhandler(MotorError)
    def motor_error(exc):
        status = status_for(exc)
        if status == 422:
            log.warning("error del motor en %s %s: %s", request.method, request.path, exc.message)
        return respond(status, exc.message, getattr(exc, "fields", None))

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return respond(400, CSRF_MESSAGE)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        status = exc.code or 500
        return respond(status, MESSAGES.get(status, exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("error no controlado en %s %s", request.method, request.path)
        return respond(500, MESSAGES[500])
