"""What the bpmn-js viewer draws on top of a diagram, read from the engine's
event history: elements done (with how many times) and elements active now."""
from collections import Counter

# Event types that mean "this element ran once more".
COUNTED = {"task_completed", "service_task_executed", "element_completed", "gateway_decision",
           "call_activity_left"}


def diagram(definition, history, active=(), current=None):
    """The JSON handed to static/js/diagrama.js for one process of an instance.

    `definition` is Engine.process_xml(...); `active` element ids may belong to
    any process of the instance (the viewer ignores ids it does not draw).
    """
    process_id = definition["process_id"]
    visits = Counter(e["element_id"] for e in history
                     if e["type"] in COUNTED and e.get("element_id") and e.get("process_id") == process_id)
    return {
        "process_id": process_id,
        "xml": definition["xml"],
        "completed": sorted(visits),
        "visits": dict(sorted(visits.items())),
        "active": sorted(set(active)),
        "current": current,
    }


def active_elements(shown):
    """Active element ids of an instance (Engine.show): waiting user tasks,
    service tasks, timers and the call activity being run."""
    ids = set(shown.get("active_elements") or [])
    ids.update(t["element_id"] for t in shown.get("pending_tasks") or [])
    ids.update(j["element_id"] for j in shown.get("service_tasks") or [])
    return ids

