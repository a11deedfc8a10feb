"""JSON API /api/v1: the same engine calls and rules as the pages.

Authentication is the session cookie of /login; every POST must carry the
CSRF token in the X-CSRFToken header (GET /api/v1/sesion returns it).
Errors are {"error": message, "fields": {...}} with 400 invalid data,
401 not signed in, 403 not allowed, 404 not found, 409 conflict, 422 engine
error (see web/errors.py). Documented in docs/web.md.
"""
from flask import Blueprint, current_app, jsonify, request
from flask_login import login_required
from flask_wtf.csrf import generate_csrf

from motor.errors import InvalidData

from .common import actor, motor, page_number
from .tareas import current_queue

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _body():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidData({"_": "Envíe un objeto JSON (Content-Type: application/json)"})
    return data


@bp.get("/sesion")
@login_required
def sesion():
    user = actor()
    return jsonify(usuario=user.username, nombre=user.nombre, roles=sorted(user.roles),
                   dependencia=user.dependencia, csrf_token=generate_csrf())


@bp.get("/tareas")
@login_required
def tareas():
    cola, _, _, pagina = current_queue()
    return jsonify(pagina=pagina, **cola)


@bp.get("/tareas/<task_id>")
@login_required
def tarea(task_id):
    return jsonify(motor().task(actor(), task_id))


@bp.post("/tareas/<task_id>/tomar")
@login_required
def tomar(task_id):
    motor().claim(actor(), task_id)
    return jsonify(ok=True, tarea=task_id, tomada_por=actor().username)


@bp.post("/tareas/<task_id>/liberar")
@login_required
def liberar(task_id):
    motor().release(actor(), task_id)
    return jsonify(ok=True, tarea=task_id)


@bp.post("/tareas/<task_id>/completar")
@login_required
def completar(task_id):
    """Body: {"campo": valor, ...}; an omitted field keeps its shown value."""
    result = motor().complete(actor(), task_id, _body())
    return jsonify(ok=True, tarea=task_id, instancia=result["instance"])


@bp.post("/instancias")
@login_required
def iniciar():
    """Body: {"proceso": "PSDT05", "datos": {...start form fields...}}."""
    body = _body()
    datos = body.get("datos", {})
    iid = motor().start(actor(), body.get("proceso") or "PSDT05", datos)
    return jsonify(ok=True, instancia=iid), 201


@bp.get("/instancias/<int:instance_id>")
@login_required
def instancia(instance_id):
    eng, user = motor(), actor()
    shown = eng.show(user, instance_id)
    if request.args.get("historial") in ("1", "true", "si"):
        shown["history"] = eng.history(user, instance_id)
    return jsonify(shown)


@bp.get("/solicitudes")
@login_required
def solicitudes():
    size = current_app.config["WEB_PAGE_SIZE"]
    pagina = page_number()
    result = motor().requests(actor(), dependencia=request.args.get("dependencia") or None,
                              status=request.args.get("estado") or None, limit=size, offset=(pagina - 1) * size)
    return jsonify(pagina=pagina, **result)
