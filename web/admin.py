"""Administration (role admin): incidents, the mail outbox, users and roles."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from motor.errors import InvalidData
from motor.roles import ROLES

from .common import actor, motor

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _admins_only():
    if not actor().has("admin"):
        abort(403)


@bp.route("")
def incidentes():
    return render_template("admin/incidentes.html", incidentes=motor().incidents(actor()))


@bp.route("/incidentes/<job_id>/reintentar", methods=("POST",))
def reintentar(job_id):
    motor().retry_incident(actor(), job_id)
    flash("El incidente se reintentará en el siguiente ciclo del trabajador.", "exito")
    return redirect(url_for("admin.incidentes"))


@bp.route("/correo")
def correo():
    return render_template("admin/correo.html", correos=motor().outbox(actor()))


@bp.route("/usuarios", methods=("GET", "POST"))
def usuarios():
    eng, user = motor(), actor()
    errors, form, status = {}, {}, 200
    if request.method == "POST":
        form = {k: (request.form.get(k) or "").strip() for k in ("usuario", "nombre", "email", "dependencia")}
        roles = [r for r in request.form.getlist("roles") if r]
        form["roles"] = roles
        password = request.form.get("clave") or None
        if not roles:
            errors["role"] = "Elija al menos un rol"
        else:
            try:
                eng.add_user(user, form["usuario"], roles, form["dependencia"] or None, password,
                             form["nombre"] or None, form["email"] or None)
            except InvalidData as exc:
                errors = exc.fields
            else:
                flash(f"Usuario {form['usuario']} guardado.", "exito")
                return redirect(url_for("admin.usuarios"))
        status = 400
    return render_template("admin/usuarios.html", usuarios=eng.users(user), roles=ROLES, errores=errors,
                           form=form), status
