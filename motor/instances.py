"""One engine step on one instance: load, act, advance, record, save.

The caller owns the transaction. Everything a step changes (workflow state,
the pending user-task and job tables, the audit events) is written through
the same connection, and the save checks `lock_version` so that of two
concurrent steps one wins and the other fails with nothing written.
"""
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

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
from sqlalchemy import bindparam, delete, select

from . import events
from .bpmn import ExternalTask
from .db import Database, instances, jobs, user_task_roles, user_tasks, utcnow
from .errors import Conflict, MotorError, NotFound
from .forms import public_fields
from .roles import role_for_lane

GATEWAYS = (ExclusiveGateway, InclusiveGateway, ParallelGateway)

# Statements of the hot path, built once: constructing a statement costs
# about twice as much as running it on SQLite.
_LOAD = select(instances).where(instances.c.id == bindparam("iid"))
_SAVE = instances.update().where(instances.c.id == bindparam("iid"), instances.c.lock_version == bindparam("expected"))
_DELETE_TASK_ROLES = delete(user_task_roles).where(user_task_roles.c.task_id.in_(bindparam("ids", expanding=True)))
_DELETE_TASKS = delete(user_tasks).where(user_tasks.c.id.in_(bindparam("ids", expanding=True)))
_DELETE_JOBS = delete(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_JOB, _INSERT_TASK, _INSERT_TASK_ROLE = jobs.insert(), user_tasks.insert(), user_task_roles.insert()
RUNNING, COMPLETED = "en_curso", "completada"


@dataclass
class Loaded:
    row: dict
    workflow: BpmnWorkflow


class LiveCache:
    """Deserialized workflows of recently stepped instances, keyed by the
    lock_version they were saved at. A caller *takes* an entry (exclusive
    ownership, so no two threads ever share a workflow object) and puts it
    back only when it is known to match the database: after a commit, or
    untouched after a read. A rolled-back step never puts anything back."""

    def __init__(self, size=256):
        self._items, self._size, self._lock = OrderedDict(), size, Lock()

    def take(self, instance_id, lock_version):
        with self._lock:
            entry = self._items.pop(instance_id, None)
        return entry[1] if entry and entry[0] == lock_version else None

    def put(self, instance_id, lock_version, workflow):
        with self._lock:
            self._items[instance_id] = (lock_version, workflow)
            self._items.move_to_end(instance_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class Runner:
    """Steps instances; holds the spec cache, serializer and script engine."""

    def __init__(self, specs, serializer, script_engine):
        self.specs, self.serializer, self.script_engine = specs, serializer, script_engine
        self.live = LiveCache()

    def load(self, conn, instance_id):
        """Load an instance for exclusive use; `release` it after reading."""
        row = conn.execute(_LOAD, {"iid": instance_id}).mappings().first()
        if row is None:
            raise NotFound(f"No existe la instancia {instance_id}")
        wf = self.live.take(row["id"], row["lock_version"])
        if wf is None:
            definition = self.specs.get(conn, row["version_id"], row["called_versions"])
            wf = self.serializer.loads(row["state"], definition, self.script_engine)
        return Loaded(dict(row), wf)

    def release(self, loaded):
        """Hand back a workflow that was only read (still matches the row)."""
        self.live.put(loaded.row["id"], loaded.row["lock_version"], loaded.workflow)

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
        before = None if first else task_states(wf)
        try:
            new_events = advance(wf, action, before, loaded.row["process_id"])
        except SpiffWorkflowException as exc:
            raise MotorError(_engine_error(exc)) from exc
        # Save first: on PostgreSQL the guarded UPDATE takes the row lock, so a
        # concurrent step on the same instance fails here before writing more.
        self._save(conn, loaded.row, wf, now)
        self._sync_pending(conn, loaded.row, wf, now, before)
        events.append(conn, loaded.row["id"], new_events, now)
        Database.after_commit(conn, lambda: self.live.put(loaded.row["id"], loaded.row["lock_version"], wf))
        return new_events

    def _save(self, conn, row, wf, now):
        done = wf.is_completed()
        values = {"state": self.serializer.dumps(wf), "updated_at": now, "lock_version": row["lock_version"] + 1,
                  "status": COMPLETED if done else RUNNING, "completed_at": now if done else None,
                  "next_timer_at": _next_timer(wf)}
        result = conn.execute(_SAVE, {"iid": row["id"], "expected": row["lock_version"], **values})
        if result.rowcount != 1:
            raise Conflict("La instancia cambió mientras se procesaba este paso; vuelva a intentarlo")
        row.update(values)

    def _sync_pending(self, conn, row, wf, now, before=None):
        """Mirror READY user tasks and external tasks into their tables.

        The tables always match the READY tasks of the last saved state, so
        the step's `before` snapshot says what they hold; without one (first
        step, or a caller that replaced the workflow) we ask the tables."""
        ready = [t for t in all_tasks(wf) if t.state == TaskState.READY]
        now_users = {str(t.id): t for t in ready if isinstance(t.task_spec, UserTask)}
        now_jobs = {str(t.id): t for t in ready if isinstance(t.task_spec, ExternalTask)}
        had_users, had_jobs = self._pending_before(conn, wf, row["id"], before)
        gone = had_users - set(now_users)
        if gone:
            conn.execute(_DELETE_TASK_ROLES, {"ids": list(gone)})
            conn.execute(_DELETE_TASKS, {"ids": list(gone)})
        for tid in set(now_users) - had_users:
            self._insert_user_task(conn, row, now_users[tid], now)
        if had_jobs - set(now_jobs):
            conn.execute(_DELETE_JOBS, {"ids": list(had_jobs - set(now_jobs))})
        new_jobs = [{"id": tid, "instance_id": row["id"], "process_id": t.workflow.spec.name,
                     "element_id": t.task_spec.bpmn_id, "name": t.task_spec.bpmn_name, "topic": t.task_spec.topic,
                     "status": "pendiente", "attempts": 0, "due_at": now, "created_at": now}
                    for tid, t in now_jobs.items() if tid not in had_jobs]
        if new_jobs:
            conn.execute(_INSERT_JOB, new_jobs)

    @staticmethod
    def _pending_before(conn, wf, instance_id, before):
        if before is None:
            return (set(conn.execute(select(user_tasks.c.id).where(user_tasks.c.instance_id == instance_id)).scalars()),
                    set(conn.execute(select(jobs.c.id).where(jobs.c.instance_id == instance_id)).scalars()))
        users, externals = set(), set()
        for task in all_tasks(wf):
            if before.get(task.id) == TaskState.READY:
                if isinstance(task.task_spec, UserTask):
                    users.add(str(task.id))
                elif isinstance(task.task_spec, ExternalTask):
                    externals.add(str(task.id))
        return users, externals

    def _insert_user_task(self, conn, row, task, now):
        spec = task.task_spec
        roles = task_roles(spec)
        conn.execute(_INSERT_TASK, dict(
            id=str(task.id), instance_id=row["id"], process_id=task.workflow.spec.name,
            element_id=spec.bpmn_id, name=spec.bpmn_name, lane=spec.lane, roles=",".join(roles),
            dependencia=row["dependencia"], created_at=now, claimed_by=None, claimed_at=None,
            form=public_fields(getattr(spec, "form_fields", []))))
        if roles:
            conn.execute(_INSERT_TASK_ROLE, [{"task_id": str(task.id), "role": r, "created_at": now} for r in roles])


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


def task_states(wf):
    return {t.id: t.state for t in all_tasks(wf)}


def advance(wf, action, before, root_process_id):
    """Act, run the engine, and say what happened: the action's explicit
    events, then those read off the task states (`before` is task_states()
    from before the action, None on the first step)."""
    explicit = action(wf)
    wf.do_engine_steps()
    skip = {e.get("task_id") for e in explicit if e.get("task_id")}
    found = explicit + diff_events(wf, before or {}, skip)
    if wf.is_completed():
        found.append({"type": "instance_completed", "process_id": root_process_id})
    return found


def diff_events(wf, before, skip):
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
