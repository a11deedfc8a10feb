"""One engine step on one instance: load, act, advance, record, save.

The caller owns the transaction. Everything a step changes (workflow state,
the pending user-task and job tables, the audit events) is written through
the same connection, and the save checks `lock_version` so that of two
concurrent steps one wins and the other fails with nothing written.
"""
from dataclasses import dataclass

from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, select

from . import events
from .bpmn import ExternalTask
from .db import instances, jobs, user_task_roles, user_tasks, utcnow
from .errors import Conflict, MotorError, NotFound
from .forms import public_fields
from .roles import role_for_lane

GATEWAYS = (ExclusiveGateway, InclusiveGateway, ParallelGateway)
RUNNING, COMPLETED = "en_curso", "completada"


@dataclass
class Loaded:
    row: dict
    workflow: BpmnWorkflow


class Runner:
    """Steps instances; holds the spec cache, serializer and script engine."""

    def __init__(self, specs, serializer, script_engine):
        self.specs, self.serializer, self.script_engine = specs, serializer, script_engine

    def load(self, conn, instance_id):
        row = conn.execute(select(instances).where(instances.c.id == instance_id)).mappings().first()
        if row is None:
            raise NotFound(f"No existe la instancia {instance_id}")
        definition = self.specs.get(conn, row["version_id"], row["called_versions"])
        return Loaded(dict(row), self.serializer.loads(row["state"], definition, self.script_engine))

    def start(self, conn, version_row, called_versions, data, username, now=None):
        now = now or utcnow()
        definition = self.specs.get(conn, version_row["id"], called_versions)
        wf = BpmnWorkflow(definition.spec, definition.subprocess_specs, script_engine=self.script_engine)
        wf.get_next_task(state=TaskState.READY).data.update(data)
        row = {
            "process_id": version_row["process_id"], "version_id": version_row["id"],
            "called_versions": called_versions, "status": RUNNING, "dependencia": data.get("dependencia"),
            "nombre_servicio": data.get("nombre_servicio"), "started_by": username, "started_at": now,
            "updated_at": now, "state": self.serializer.dumps(wf), "lock_version": 1,
        }
        row["id"] = conn.execute(instances.insert().values(**row)).inserted_primary_key[0]
        created = {"type": "instance_created", "process_id": row["process_id"], "username": username,
                   "data": {"version_id": version_row["id"], "version": version_row["version"],
                            "called_versions": called_versions, "data": data}}
        self.step(conn, Loaded(row, wf), lambda wf: [created], now=now, first=True)
        return row["id"]

    def step(self, conn, loaded, action, now=None, first=False):
        """Run `action(workflow) -> [explicit events]`, then the engine; save."""
        now = now or utcnow()
        wf = loaded.workflow
        before = {} if first else _states(wf)
        try:
            explicit = action(wf)
            wf.do_engine_steps()
        except SpiffWorkflowException as exc:
            raise MotorError(_engine_error(exc)) from exc
        skip = {e.get("task_id") for e in explicit if e.get("task_id")}
        new_events = explicit + _diff_events(wf, before, skip)
        if wf.is_completed():
            new_events.append({"type": "instance_completed", "process_id": loaded.row["process_id"]})
        # Save first: on PostgreSQL the guarded UPDATE takes the row lock, so a
        # concurrent step on the same instance fails here before writing more.
        self._save(conn, loaded.row, wf, now)
        self._sync_pending(conn, loaded.row, wf, now)
        events.append(conn, loaded.row["id"], new_events, now)
        return new_events

    def _save(self, conn, row, wf, now):
        done = wf.is_completed()
        values = {"state": self.serializer.dumps(wf), "updated_at": now, "lock_version": row["lock_version"] + 1,
                  "status": COMPLETED if done else RUNNING, "completed_at": now if done else None,
                  "next_timer_at": _next_timer(wf)}
        result = conn.execute(instances.update().where(
            instances.c.id == row["id"], instances.c.lock_version == row["lock_version"]).values(**values))
        if result.rowcount != 1:
            raise Conflict("La instancia cambió mientras se procesaba este paso; vuelva a intentarlo")
        row.update(values)

    def _sync_pending(self, conn, row, wf, now):
        """Mirror READY user tasks and external tasks into their tables."""
        ready = wf.get_tasks(state=TaskState.READY)
        users_ready = {str(t.id): t for t in ready if isinstance(t.task_spec, UserTask)}
        jobs_ready = {str(t.id): t for t in ready if isinstance(t.task_spec, ExternalTask)}
        iid = row["id"]
        have = set(conn.execute(select(user_tasks.c.id).where(user_tasks.c.instance_id == iid)).scalars())
        gone = have - set(users_ready)
        if gone:
            conn.execute(delete(user_task_roles).where(user_task_roles.c.task_id.in_(gone)))
            conn.execute(delete(user_tasks).where(user_tasks.c.id.in_(gone)))
        for tid in set(users_ready) - have:
            self._insert_user_task(conn, row, users_ready[tid], now)
        have_jobs = set(conn.execute(select(jobs.c.id).where(jobs.c.instance_id == iid)).scalars())
        if have_jobs - set(jobs_ready):
            conn.execute(delete(jobs).where(jobs.c.id.in_(have_jobs - set(jobs_ready))))
        for tid in set(jobs_ready) - have_jobs:
            t = jobs_ready[tid]
            conn.execute(jobs.insert().values(
                id=tid, instance_id=iid, process_id=t.workflow.spec.name, element_id=t.task_spec.bpmn_id,
                name=t.task_spec.bpmn_name, topic=t.task_spec.topic, status="pendiente", attempts=0,
                due_at=now, created_at=now))

    def _insert_user_task(self, conn, row, task, now):
        spec = task.task_spec
        roles = task_roles(spec)
        conn.execute(user_tasks.insert().values(
            id=str(task.id), instance_id=row["id"], process_id=task.workflow.spec.name,
            element_id=spec.bpmn_id, name=spec.bpmn_name, lane=spec.lane, roles=",".join(roles),
            dependencia=row["dependencia"], created_at=now,
            form=public_fields(getattr(spec, "form_fields", []))))
        for role in roles:
            conn.execute(user_task_roles.insert().values(task_id=str(task.id), role=role, created_at=now))


def task_roles(spec):
    groups = getattr(spec, "candidate_groups", None)
    if groups:
        return list(groups)
    role = role_for_lane(spec.lane)
    return [role] if role else []


def all_tasks(wf):
    yield from wf.tasks.values()
    for sp in wf.subprocesses.values():
        yield from sp.tasks.values()


def _states(wf):
    return {t.id: t.state for t in all_tasks(wf)}


def _diff_events(wf, before, skip):
    found = []
    for task in all_tasks(wf):
        spec = task.task_spec
        if getattr(spec, "bpmn_id", None) is None or before.get(task.id) == task.state:
            continue
        event = _event_for(task, skip)
        if event is not None:
            event.update(process_id=task.workflow.spec.name, element_id=spec.bpmn_id,
                         element_name=spec.bpmn_name, task_id=str(task.id))
            found.append((task.last_state_change, event))
    found.sort(key=lambda pair: pair[0])
    return [e for _, e in found]


def _event_for(task, skip):
    spec, state = task.task_spec, task.state
    if state == TaskState.COMPLETED:
        if str(task.id) in skip:
            return None
        if isinstance(spec, GATEWAYS) and len(spec.outputs) > 1:
            return {"type": "gateway_decision", "data": {"to": [c.task_spec.bpmn_id for c in task.children]}}
        if isinstance(spec, SubWorkflowTask):
            return {"type": "call_activity_left", "data": {"called": spec.spec}}
        return {"type": "element_completed", "data": {"kind": type(spec).__name__}}
    if state == TaskState.READY and isinstance(spec, UserTask):
        return {"type": "task_ready", "data": {"roles": task_roles(spec)}}
    if state == TaskState.READY and isinstance(spec, ExternalTask):
        return {"type": "service_task_ready", "data": {"topic": spec.topic}}
    if state == TaskState.STARTED and isinstance(spec, SubWorkflowTask):
        return {"type": "call_activity_entered", "data": {"called": spec.spec}}
    if state == TaskState.WAITING and isinstance(spec, CatchingEvent) and _is_timer(spec):
        return {"type": "timer_waiting", "data": {}}
    return None


def _is_timer(spec):
    return isinstance(getattr(spec, "event_definition", None), TimerEventDefinition)


def _next_timer(wf):
    """Earliest due time of waiting timer events (naive UTC), or None."""
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition as T
    due = []
    for pending in wf.waiting_events():
        value = getattr(pending, "value", None)
        if isinstance(value, str):
            try:
                due.append(T.get_datetime(value).replace(tzinfo=None))
            except ValueError:
                continue
    return min(due) if due else None


def _engine_error(exc):
    where = getattr(exc, "task_spec", None) or getattr(getattr(exc, "task", None), "task_spec", None)
    element = getattr(where, "bpmn_id", None) or getattr(where, "name", None) or "?"
    return f"Error del motor en el elemento {element}: {exc}"
