"""The work queue (/tareas) and the task page with its generated form."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from motor.errors import Conflict, InvalidData

from . import campos
from .common import actor, motor, page_number, safe_next
from .diagramas import active_elements, diagram
from .instancias import main_events

bp = Blueprint("tareas", __name__, url_prefix="/tareas")

ESTADOS = {"todas": None, "sin_tomar": "sin_tomar", "mias": "mias"}


def inicio():
    """Each role lands where its work is: auditors on the audit search, the
    Director on the queue, where the Annex 1 treatment arrives."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_user.user.has("auditor") and not current_user.user.has("admin"):
        return redirect(url_for("auditoria.buscar"))
    return redirect(url_for("tareas.lista"))


def queue_args():
    """Filters from the query string: proceso (PSDT05/PSDT07), estado, pagina."""
    proceso = request.args.get("proceso") or None
    if proceso not in (None, "PSDT05", "PSDT07"):
        proceso = None
    estado = request.args.get("estado") or "todas"
    if estado not in ESTADOS:
        estado = "todas"
    return proceso, estado, page_number()


def current_queue():
    """The signed-in user's queue page for the filters in the query string
    (shared by this page and the JSON API)."""
    proceso, estado, pagina = queue_args()
    size = current_app.config["WEB_PAGE_SIZE"]
    cola = motor().queue(actor(), process_id=proceso, claimed=ESTADOS[estado], limit=size,
                         offset=(pagina - 1) * size, overdue_days=current_app.config["WEB_OVERDUE_DAYS"])
    return cola, proceso, estado, pagina


@bp.route("")
@login_required
def lista():
    cola, proceso, estado, pagina = current_queue()
    return render_template("tareas/lista.html", cola=cola, proceso=proceso, estado=estado, pagina=pagina)


@bp.route("/<task_id>", methods=("GET", "POST"))
@login_required
def detalle(task_id):
    eng, user = motor(), actor()
    if request.method == "POST":
        return _complete(eng, user, task_id)
    task = eng.task(user, task_id)
    return _page(eng, user, task)


def _complete(eng, user, task_id):
    task = None
    try:
        task = eng.task(user, task_id)
        submitted = campos.collect(task["form"], request.form)
        eng.complete(user, task_id, submitted)
    except InvalidData as exc:
        return _page(eng, user, task, submitted, exc.fields, 400)
    except Conflict as exc:
        # Completed or taken meanwhile (or a second click): nothing was written;
        # show what the user typed so nothing is lost.
        return render_template("errores/conflicto.html", status=409, titulo="La tarea ya no está disponible",
                               mensaje=exc.message, enviados=_sent(request.form),
                               instancia=task["instance"] if task else None), 409
    flash(f"Tarea completada: {task['name']}.", "exito")
    return redirect(safe_next(request.form.get("volver"), url_for("tareas.lista")))


def _sent(form):
    return [(k, v) for k, v in form.items(multi=True) if k not in ("csrf_token", "volver") and v]


def _page(eng, user, task, submitted=None, errors=None, status=200):
    iid = task["instance"]
    shown = eng.show(user, iid)
    history = eng.history(user, iid)
    definition = eng.process_xml(user, iid, task["process"])
    return render_template(
        "tareas/detalle.html", task=task, inst=shown, recientes=list(reversed(main_events(history)[-8:])),
        diag=diagram(definition, history, active_elements(shown), current=task["element_id"]),
        definicion=definition, campos=task["form"], valores=campos.values_for(task["form"], submitted),
        widget=campos.widget, errores=errors or {}, volver=safe_next(request.values.get("volver"), url_for("tareas.lista")),
    ), status


@bp.route("/<task_id>/tomar", methods=("POST",))
@login_required
def tomar(task_id):
    motor().claim(actor(), task_id)
    flash("Tomó la tarea: queda reservada para usted.", "exito")
    return redirect(safe_next(request.form.get("volver"), url_for("tareas.detalle", task_id=task_id)))


@bp.route("/<task_id>/liberar", methods=("POST",))
@login_required
def liberar(task_id):
    motor().release(actor(), task_id)
    flash("Liberó la tarea: cualquiera de su rol puede tomarla.", "exito")
    return redirect(safe_next(request.form.get("volver"), url_for("tareas.lista")))
