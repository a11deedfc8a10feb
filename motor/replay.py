"""Replay an instance from its stored history, two ways.

`state_at(history, k)`: the state after event k, folded from the events alone
(no workflow is loaded, nothing external is asked): elements completed and
how many times, elements active (tokens), the sequence flows taken, the
process data and the orden de servicio as far as the events tell.
Process data = instance_created.data.data, then each task_completed
data.form and service_task_executed data.result merged in order.

`reexecute(history, ...)`: run the instance again from its start, on the
definition version it started on, in a fresh in-memory BpmnWorkflow with
the same safe script engine, feeding it the recorded user inputs
(task_completed data.form), the recorded handler results
(service_task_executed data.result), the recorded migrations, and firing
timers exactly when the history says they fired. No handler and no network
is ever called. It must produce the same sequence of events; we compare a
projection (type, process, element, gateway targets) and ignore ids, times,
claims, mail, incidents and timer waits (a zero-length wait fires inside
the step that reached it and records no wait).
"""
from collections import Counter, OrderedDict
from dataclasses import dataclass
from threading import Lock

from SpiffWorkflow.bpmn.specs.event_definitions.timer import (DurationTimerEventDefinition,
                                                              TimeDateEventDefinition, TimerEventDefinition)
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from . import events
from .bpmn import BPMN_NS, ExternalTask
from .db import instances, process_versions
from .errors import NotFound
from .instances import advance, all_tasks, task_states
from .migration import migrate_in_place
from .xmlparse import parse_xml

IGNORED = {"task_claimed", "task_released", "mail_sent", "incident", "incident_retried", "timer_waiting"}
STARTS = {"task_ready": "lista", "service_task_ready": "en_cola", "call_activity_entered": "en_subproceso",
          "timer_waiting": "en_espera"}
DONE = {"task_completed", "service_task_executed", "element_completed", "gateway_decision", "call_activity_left"}


# -- the process graph (sequence flows) -----------------------------------------
@dataclass
class Graph:
    process_id: str
    names: dict      # element id -> name
    incoming: dict   # target id -> [(flow id, source id)]


def graph(xml_text, process_id):
    """Names and incoming sequence flows of one process of a BPMN file."""
    tree = parse_xml(xml_text.encode("utf-8"))
    names, incoming = {}, {}
    for proc in tree.getroot().iter(f"{{{BPMN_NS}}}process"):
        if proc.get("id") != process_id:
            continue
        for node in proc.iter():
            if not isinstance(node.tag, str) or not node.get("id"):
                continue
            if node.tag == f"{{{BPMN_NS}}}sequenceFlow":
                incoming.setdefault(node.get("targetRef"), []).append((node.get("id"), node.get("sourceRef")))
            elif node.get("name"):
                names[node.get("id")] = node.get("name")
    return Graph(process_id, names, incoming)


# -- state after step k ---------------------------------------------------------
def state_at(history, k, graphs=None):
    """The state after event `k` (1..len; 0 = before anything happened).

    `history`: events as motor.events.as_dict gives them, in seq order.
    `graphs(process_id, version_id) -> Graph | None` adds the sequence flows
    taken: when an element starts a visit, the flow comes from the source of
    its incoming flows that completed last (and that a gateway decision, if
    any, sent there).
    """
    k = max(0, min(int(k), len(history)))
    data, orden, status = {}, {"folio": None, "estado": None}, "en_curso"
    versions = _started_on(history[0]) if history else {}  # known before step 1 too
    active, completed, last_done, decided, flows = {}, Counter(), {}, {}, Counter()
    names = {}
    before = {}
    for index, ev in enumerate(history[:k], start=1):
        if index == k:
            before = dict(data)
        kind, d = ev["type"], ev.get("data") or {}
        if kind == "instance_created":
            versions = _started_on(ev)
            data.update(d.get("data") or {})
        elif kind == "instance_migrated":
            versions = {ev["process_id"]: d.get("to_version_id"), **(d.get("called_to") or {})}
        elif kind == "task_completed":
            data.update(d.get("form") or {})
        elif kind == "service_task_executed":
            result = d.get("result") or {}
            data.update(result)
            if "orden_estado" in result:
                orden = {"folio": result.get("folio", orden["folio"]), "estado": result["orden_estado"]}
        elif kind == "instance_completed":
            status = "completada"
        element = ev.get("element_id")
        if not element:
            continue
        key = (ev["process_id"], element)
        names.setdefault(key, ev.get("element_name"))
        if kind in STARTS:
            if key not in active:
                _flow_into(key, versions, graphs, last_done, decided, flows)
            active[key] = {"state": STARTS[kind], "since": ev["seq"]}
        elif kind == "incident" and key in active:
            active[key]["state"] = "incidente"
        elif kind == "incident_retried" and key in active:
            active[key]["state"] = "en_cola"
        elif kind in DONE:
            if key not in active:
                _flow_into(key, versions, graphs, last_done, decided, flows)
            active.pop(key, None)
            completed[key] += 1
            last_done[key] = ev["seq"]
            if kind == "gateway_decision":
                decided[key] = set(d.get("to") or ())
    return {
        "step": k, "total": len(history), "status": status, "versions": versions,
        "event": history[k - 1] if k else None,
        "completed": [{"process_id": p, "element_id": e, "name": names.get((p, e)), "count": n}
                      for (p, e), n in sorted(completed.items())],
        "active": [{"process_id": p, "element_id": e, "name": names.get((p, e)), **info}
                   for (p, e), info in sorted(active.items())],
        "flows": [{"process_id": p, "flow_id": f, "source": s, "target": t, "count": n}
                  for (p, f, s, t), n in sorted(flows.items())],
        "data_before": before if k else {}, "data": data, "orden": orden,
    }


def _started_on(ev):
    """process id -> version id an instance started on (its first event)."""
    if ev["type"] != "instance_created":
        return {}
    d = ev.get("data") or {}
    return {ev["process_id"]: d.get("version_id"), **(d.get("called_versions") or {})}


def _flow_into(key, versions, graphs, last_done, decided, flows):
    process_id, target = key
    g = graphs(process_id, versions.get(process_id)) if graphs else None
    if g is None:
        return
    best = None
    for flow_id, source in g.incoming.get(target, ()):
        when = last_done.get((process_id, source))
        if when is None or ((process_id, source) in decided and target not in decided[(process_id, source)]):
            continue
        if best is None or when > best[0]:
            best = (when, flow_id, source)
    if best is not None:
        flows[(process_id, best[1], best[2], target)] += 1


# -- re-execution ---------------------------------------------------------------
def project(ev):
    """What re-execution must reproduce of an event (None: not compared)."""
    kind = ev["type"]
    if kind in IGNORED:
        return None
    to = tuple((ev.get("data") or {}).get("to") or ()) if kind == "gateway_decision" else None
    return (kind, ev.get("process_id"), ev.get("element_id"), to)


def describe(projected):
    if projected is None:
        return "ningún evento"
    kind, process_id, element, to = projected
    text = f"{kind} {element}" if element else kind
    if to is not None:
        text += " → " + ", ".join(to)
    return f"{text} ({process_id})" if process_id else text


@dataclass
class Verification:
    ok: bool
    compared: int
    seq: int | None = None
    expected: str | None = None
    got: str | None = None
    message: str | None = None

    def as_dict(self):
        return {"ok": self.ok, "compared": self.compared, "seq": self.seq, "expected": self.expected,
                "got": self.got, "message": self.message}

    def __str__(self):
        if self.ok:
            return f"la re-ejecución reproduce los {self.compared} eventos comparados"
        return (f"diverge en el evento {self.seq}: {self.message}; registrado: {self.expected}; "
                f"re-ejecución: {self.got}")


def reexecute(history, load_definition, script_engine):
    """Re-run the instance; `load_definition(version_id, called_versions)`
    gives the parsed Definition of a version (Runner.specs.get)."""
    if not history or history[0]["type"] != "instance_created":
        first = history[0] if history else None
        return Verification(False, 0, first["seq"] if first else 1, "instance_created", describe(project(first)) if first else None,
                            "el historial no empieza con la creación de la instancia")
    created = history[0]
    root, info = created["process_id"], created.get("data") or {}
    definition = load_definition(info.get("version_id"), info.get("called_versions") or {})
    wf = BpmnWorkflow(definition.spec, definition.subprocess_specs, script_engine=_FrozenClock(script_engine))
    wf.get_next_task(state=TaskState.READY).data.update(info.get("data") or {})
    recorded = [(ev, p) for ev in history if (p := project(ev)) is not None]
    produced = _advance(wf, root, lambda w: [{"type": "instance_created", "process_id": root}], first=True)
    pos = 0
    while True:
        while pos < len(recorded) and pos < len(produced):
            ev, want = recorded[pos]
            if produced[pos] != want:
                return Verification(False, pos, ev["seq"], describe(want), describe(produced[pos]),
                                    "la re-ejecución produce otro evento")
            pos += 1
        if pos == len(recorded):
            if pos < len(produced):
                return Verification(False, pos, history[-1]["seq"] + 1, describe(None), describe(produced[pos]),
                                    "la re-ejecución produce eventos que el historial no tiene")
            return Verification(True, pos)
        ev, want = recorded[pos]
        action, why = _driver(wf, ev, load_definition, root)
        if action is None:
            return Verification(False, pos, ev["seq"], describe(want), describe(None), why)
        try:
            produced.extend(_advance(wf, root, action))
        except SpiffWorkflowException as exc:
            return Verification(False, pos, ev["seq"], describe(want), describe(None),
                                f"error del motor al re-ejecutar: {exc}")


def _advance(wf, root, action, first=False):
    """Runner.step without the database: act, run the engine, diff."""
    found = advance(wf, action, None if first else task_states(wf), root)
    return [p for p in map(project, found) if p is not None]


def _driver(wf, ev, load_definition, root):
    """The action that makes the workflow do what event `ev` recorded, or
    (None, reason) when the workflow cannot."""
    kind, element, process_id, d = ev["type"], ev.get("element_id"), ev.get("process_id"), ev.get("data") or {}
    if kind in ("task_completed", "service_task_executed"):
        spec_type = UserTask if kind == "task_completed" else ExternalTask
        ready = [t for t in all_tasks(wf) if t.state == TaskState.READY and isinstance(t.task_spec, spec_type)]
        task = next((t for t in ready if t.task_spec.bpmn_id == element and t.workflow.spec.name == process_id), None)
        if task is None:
            waiting = ", ".join(sorted(t.task_spec.bpmn_id for t in ready)) or "ninguna"
            return None, f"la tarea {element} no está lista en la re-ejecución (listas: {waiting})"
        values = d.get("form") if kind == "task_completed" else d.get("result")

        def run(w):
            task.data.update(values or {})
            task.run()
            return [{"type": kind, "process_id": process_id, "element_id": element, "task_id": str(task.id)}]
        return run, None
    if kind == "instance_migrated":
        new_def = load_definition(d.get("to_version_id"), d.get("called_to") or {})

        def migrate(w):
            migrate_in_place(w, new_def)  # its checks passed when it was recorded
            return [{"type": kind, "process_id": root}]
        return migrate, None
    timers = [t for t in all_tasks(wf) if t.state == TaskState.WAITING and _is_timer(t.task_spec)
              and t.task_spec.bpmn_id == element and t.workflow.spec.name == process_id]
    if kind == "element_completed" and timers:
        def fire(w):
            for t in timers:
                t._set_internal_data(event_fired=True)
            w.refresh_timers()
            return []
        return fire, None
    return None, "la re-ejecución no llega a este evento con las entradas registradas"


def _is_timer(spec):
    return isinstance(getattr(spec, "event_definition", None), TimerEventDefinition)


class _FrozenClock:
    """The instance's own script engine, except that timer expressions never
    come due by the wall clock: a replayed timer fires only when the history
    says it fired."""

    NEVER = {DurationTimerEventDefinition: "P100Y", TimeDateEventDefinition: "9999-12-31T00:00:00+00:00"}

    def __init__(self, base):
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)

    def evaluate(self, task, expression, external_context=None):
        event = getattr(task.task_spec, "event_definition", None)
        if type(event) in self.NEVER and expression == event.expression:
            return self.NEVER[type(event)]
        return self._base.evaluate(task, expression, external_context)


# -- reading what a replay needs from the database --------------------------------
_GRAPHS = OrderedDict()   # (content_hash, process_id) -> Graph; a version's XML never changes
_GRAPHS_LOCK = Lock()


def load_state(conn, instance_id, step, with_xml=False):
    """`state_at` for a stored instance, with what identifies it; `with_xml`
    adds the BPMN XML of each process version in effect at that step."""
    row = _instance(conn, instance_id)
    history = events.history(conn, instance_id)
    versions = _version_rows(conn, history)
    state = state_at(history, step, lambda pid, vid: _graph(conn, versions.get(vid), pid))
    state["instance"] = {k: row[k] for k in ("id", "process_id", "folio", "dependencia", "nombre_servicio", "status")}
    state["instance"]["version"] = versions[row["version_id"]]["version"] if row["version_id"] in versions else None
    if with_xml:
        state["diagrams"] = [{"process_id": pid, "version": versions[vid]["version"], "xml": _xml(conn, vid)}
                             for pid, vid in state["versions"].items() if vid in versions]
    return state


def verify_instance(conn, runner, instance_id):
    _instance(conn, instance_id)
    history = events.history(conn, instance_id)
    return reexecute(history, lambda vid, called: runner.specs.get(conn, vid, called), runner.script_engine)


def _instance(conn, instance_id):
    row = conn.execute(select(instances).where(instances.c.id == instance_id)).mappings().first()
    if row is None:
        raise NotFound(f"No existe la instancia {instance_id}")
    return row


def _version_rows(conn, history):
    """id -> (id, process_id, version, content_hash) of every version the history names."""
    ids = {row_id for ev in history for row_id in _named_versions(ev)}
    ids.discard(None)
    if not ids:
        return {}
    q = select(process_versions.c.id, process_versions.c.process_id, process_versions.c.version,
               process_versions.c.content_hash).where(process_versions.c.id.in_(ids))
    return {r["id"]: dict(r) for r in conn.execute(q).mappings()}


def _named_versions(ev):
    d = ev.get("data") or {}
    if ev["type"] == "instance_created":
        return [d.get("version_id"), *(d.get("called_versions") or {}).values()]
    if ev["type"] == "instance_migrated":
        return [d.get("to_version_id"), *(d.get("called_to") or {}).values()]
    return []


def _xml(conn, version_id):
    return conn.execute(select(process_versions.c.xml).where(process_versions.c.id == version_id)).scalar_one()


def _graph(conn, version, process_id):
    if version is None:
        return None
    key = (version["content_hash"], process_id)
    with _GRAPHS_LOCK:
        if key in _GRAPHS:
            _GRAPHS.move_to_end(key)
            return _GRAPHS[key]
    found = graph(_xml(conn, version["id"]), process_id)
    with _GRAPHS_LOCK:
        _GRAPHS[key] = found
        while len(_GRAPHS) > 64:
            _GRAPHS.popitem(last=False)
    return found
