"""Requests: start a PSDT-05 request (/solicitudes/nueva) and list them (/solicitudes)."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required

from motor.errors import InvalidData
from motor.forms import with_values
from motor.roles import READ_ALL_ROLES

from . import campos
from .common import actor, motor, page_number

bp = Blueprint("solicitudes", __name__, url_prefix="/solicitudes")

PROCESS = "PSDT05"


@bp.route("")
@login_required
def lista():
    user = actor()
    estado = request.args.get("estado") or None
    if estado not in (None, "en_curso", "completada"):
        estado = None
    dependencia = (request.args.get("dependencia") or "").strip() or None
    pagina = page_number()
    size = current_app.config["WEB_PAGE_SIZE"]
    result = motor().requests(user, dependencia=dependencia, status=estado, limit=size, offset=(pagina - 1) * size)
    total_paginas = max(1, -(-result["total"] // size))
    return render_template("solicitudes/lista.html", res=result, estado=estado, pagina=pagina,
                           total_paginas=total_paginas, dependencia=dependencia,
                           puede_filtrar=user.has(*READ_ALL_ROLES))


@bp.route("/nueva", methods=("GET", "POST"))
@login_required
def nueva():
    eng, user = motor(), actor()
    fields = _start_fields(eng, user)
    submitted, errors, status = None, {}, 200
    if request.method == "POST":
        submitted = campos.collect(fields, request.form)
        if _own_dependencia_only(user):
            submitted["dependencia"] = user.dependencia
        try:
            iid = eng.start(user, PROCESS, submitted)
        except InvalidData as exc:
            errors, status = exc.fields, 400
        else:
            flash(f"Solicitud número {iid} registrada. Mesa de Ayuda la revisará y levantará la orden de servicio.",
                  "exito")
            return redirect(url_for("instancias.detalle", instance_id=iid))
    dependencias = eng.dependencias(user) if not _own_dependencia_only(user) else []
    return render_template("solicitudes/nueva.html", campos=fields, valores=campos.values_for(fields, submitted),
                           widget=campos.widget, errores=errors, dependencias=dependencias), status


def _own_dependencia_only(user):
    """A solicitante starts requests for its own dependencia only (the engine's rule)."""
    return user.has("solicitante") and not user.has("mesa_ayuda", "admin")


def _start_fields(eng, user):
    """The start form; for a solicitante the dependencia and the channel are fixed
    (shown, not editable): requests arriving by phone are registered by Mesa de Ayuda."""
    fields = with_values(eng.start_form(user, PROCESS), {})
    if _own_dependencia_only(user):
        for f in fields:
            if f["id"] == "dependencia":
                f.update(readonly=True, value=user.dependencia)
            elif f["id"] == "canal":
                f.update(readonly=True)
    return fields
