"""The instance page: status, data, orden de servicio, monitoring, timeline and
the diagrams (PSDT-05 and the PSDT-07 it calls) with their markers."""
from flask import Blueprint, render_template, request
from flask_login import login_required

from .common import actor, motor
from .diagramas import active_elements, diagram

bp = Blueprint("instancias", __name__, url_prefix="/instancias")

# Shown in the short timeline; "?eventos=todos" shows every event.
MAIN_EVENTS = {"instance_created", "task_claimed", "task_released", "task_completed", "service_task_executed",
               "gateway_decision", "call_activity_entered", "call_activity_left", "timer_waiting", "incident",
               "incident_retried", "mail_sent", "instance_completed"}


@bp.route("/<int:instance_id>")
@login_required
def detalle(instance_id):
    eng, user = motor(), actor()
    shown = eng.show(user, instance_id)
    history = eng.history(user, instance_id)
    active = active_elements(shown)
    root = eng.process_xml(user, instance_id)
    diagramas = [diagram(root, history, active)]
    for called in root["called"]:
        diagramas.append(diagram(eng.process_xml(user, instance_id, called), history, active))
    todos = request.args.get("eventos") == "todos"
    return render_template("instancias/detalle.html", inst=shown, diagramas=diagramas,
                           eventos=history if todos else main_events(history), todos=todos,
                           total_eventos=len(history), nombres=element_names(history),
                           datos=sorted(shown["data"].items()))


def main_events(history):
    return [e for e in history if e["type"] in MAIN_EVENTS]


def element_names(history):
    """Element id -> name as the events recorded it (to name gateway targets)."""
    return {e["element_id"]: e["element_name"] for e in history if e.get("element_id") and e.get("element_name")}
