"""Moving running instances to a newer version of their process.

SpiffWorkflow (bpmn.util.diff) aligns the task specs of two versions by id,
and `migrate_workflow` points the instance's tasks at the new specs and
re-predicts the branches that are ready or waiting. We add what it leaves
to the caller: deciding when that is safe, saying why not in Spanish, and
keeping our tables (instance version, pending user tasks and jobs, events)
in step with the migrated state.

A migration is refused when
- the instance is finished, or the target is not newer than what it runs;
- a task the instance is at (ready, waiting or running) was removed in the
  new version, or changed type (a user task that became a service task);
- a task it already went through was removed (its history could not be
  restored against the new version);
- the process it is running as a call activity is no longer called there;
- a service task of the instance is being run by a worker right now;
- or, as a last check, the migrated state does not restore identically.
"""
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, migrate_workflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, select

from . import definitions, diff
from .bpmn import ExternalTask
from .db import instances, jobs, process_versions, user_task_roles, user_tasks, utcnow
from .errors import MotorError, NotFound
from .forms import public_fields
from .instances import COMPLETED, Loaded, all_tasks, task_roles

ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
STATE_NAMES = {TaskState.READY: "lista", TaskState.WAITING: "en espera", TaskState.STARTED: "en curso"}
TYPE_NAMES = {"UserTask": "tarea de usuario", "ExternalTask": "tarea de servicio", "CallActivity": "actividad de llamada",
              "ExclusiveGateway": "compuerta exclusiva", "ParallelGateway": "compuerta paralela",
              "InclusiveGateway": "compuerta inclusiva", "IntermediateCatchEvent": "evento intermedio",
              "StartEvent": "evento de inicio", "EndEvent": "evento de fin", "ManualTask": "tarea manual",
              "NoneTask": "tarea"}


class Refused(MotorError):
    """The instance cannot be migrated; `reasons` says why (Spanish)."""

    def __init__(self, instance_id, reasons, report=None):
        super().__init__(f"La instancia {instance_id} no se puede migrar: " + "; ".join(reasons))
        self.reasons = list(reasons)
        self.report = report or {"instance": instance_id, "reasons": self.reasons}


class _Signature:
    """Stands in for a serializer registry in SpecDiff: what of a task spec
    counts as a change (our ExternalTask has no stock converter, and the
    stock UserTask converter ignores our forms and candidate groups)."""

    def convert(self, spec):
        d = {"typename": type(spec).__name__, "bpmn_name": getattr(spec, "bpmn_name", None),
             "lane": getattr(spec, "lane", None),
             "outputs": sorted(s.name for s in spec.outputs), "inputs": sorted(s.name for s in spec.inputs)}
        if isinstance(spec, ExternalTask):
            d["topic"] = spec.topic
        if isinstance(spec, UserTask):
            d["form"] = public_fields(getattr(spec, "form_fields", []))
            d["roles"] = task_roles(spec)
        if hasattr(spec, "cond_task_specs"):
            d["conditions"] = [(getattr(c, "args", [c])[0], name) for c, name in spec.cond_task_specs]
            d["default"] = getattr(spec, "default_task_spec", None)
        if isinstance(spec, SubWorkflowTask):
            d["called"] = spec.spec
        event = getattr(spec, "event_definition", None)
        if event is not None:
            d["event"] = (type(event).__name__, getattr(event, "expression", None))
        return d


SIGNATURE = _Signature()


def target_row(conn, process_id, version):
    row = conn.execute(select(process_versions).where(process_versions.c.process_id == process_id,
                                                      process_versions.c.version == version)).mappings().first()
    if row is None:
        raise NotFound(f"El proceso {process_id} no tiene versión {version}")
    return dict(row)


def preview(conn, runner, instance_id, version):
    """What migrating the instance would do, without changing anything."""
    row, current, target, called = _context(conn, instance_id, version)
    wf = _fresh(conn, runner, row)
    return {**_plan(conn, runner, row, current, target, called, wf), "migrated": False}


def apply(conn, runner, instance_id, version, username):
    """Migrate one instance inside the caller's transaction (one engine step)."""
    row, current, target, called = _context(conn, instance_id, version)
    wf = _fresh(conn, runner, row)
    before_rows = _pending_rows(conn, instance_id)
    result = {}

    def action(workflow):
        report = _plan(conn, runner, row, current, target, called, workflow)
        result.update(report)
        if not report["ok"]:
            raise Refused(instance_id, report["reasons"], report)
        return [{"type": "instance_migrated", "process_id": row["process_id"], "username": username,
                 "data": {"from_version": current["version"], "to_version": target["version"],
                          "from_version_id": current["id"], "to_version_id": target["id"],
                          "called_from": row["called_versions"], "called_to": called,
                          "changes": report["changes"]}}]

    runner.step(conn, Loaded(row, wf), action)
    conn.execute(instances.update().where(instances.c.id == instance_id)
                 .values(version_id=target["id"], called_versions=called))
    result["pending"] = _resync(conn, row, wf, before_rows, utcnow())
    result["migrated"] = True
    return result


# -- planning -------------------------------------------------------------------
def _context(conn, instance_id, version):
    row = conn.execute(select(instances).where(instances.c.id == instance_id)).mappings().first()
    if row is None:
        raise NotFound(f"No existe la instancia {instance_id}")
    row = dict(row)
    current = dict(conn.execute(select(process_versions).where(process_versions.c.id == row["version_id"])).mappings().one())
    target = target_row(conn, row["process_id"], version)
    return row, current, target, definitions.resolve_called(conn, target)


def _fresh(conn, runner, row):
    """A private copy of the instance's workflow (never the live cache's)."""
    definition = runner.specs.get(conn, row["version_id"], row["called_versions"])
    return runner.serializer.loads(row["state"], definition, runner.script_engine)


def _plan(conn, runner, row, current, target, called, wf):
    """Check, and migrate `wf` in place when safe; the report says what happened."""
    report = {"instance": row["id"], "process_id": row["process_id"], "folio": row.get("folio"),
              "from_version": current["version"], "to_version": target["version"],
              "called_from": _versions(conn, row["called_versions"]), "called_to": _versions(conn, called),
              "ok": False, "reasons": [], "changes": [], "active": _active(wf)}
    reasons = report["reasons"]
    if row["status"] == COMPLETED:
        reasons.append("la instancia ya terminó; solo se migran instancias en curso")
        return report
    if target["version"] < current["version"]:
        reasons.append(f"la versión {target['version']} es anterior a la versión {current['version']} que usa "
                       "la instancia; solo se migra a una versión más reciente")
    elif target["id"] == current["id"] and dict(row["called_versions"] or {}) == called:
        reasons.append(f"la instancia ya usa la versión {target['version']} y las versiones vigentes de los "
                       "procesos que llama; no hay nada que migrar")
    leased = conn.execute(select(jobs.c.name).where(jobs.c.instance_id == row["id"], jobs.c.locked_until.is_not(None),
                                                    jobs.c.locked_until > utcnow())).scalars().all()
    for name in leased:
        reasons.append(f"la tarea de servicio «{name}» se está ejecutando en este momento; vuelva a intentarlo "
                       "en unos minutos")
    if reasons:
        return report

    new_def = runner.specs.get(conn, target["id"], called)
    report["changes"] = _changes(conn, row, current, target, called)
    top = WorkflowDiff(wf, SpecDiff(SIGNATURE, wf.spec, new_def.spec))
    reasons.extend(_unsafe(top, target["version"]))
    sub_diffs = {}
    for sp_id, sp in wf.subprocesses.items():
        new_spec = new_def.subprocess_specs.get(sp.spec.name)
        if new_spec is None:
            reasons.append(f"la instancia está dentro del proceso llamado {sp.spec.name}, que la versión "
                           f"{target['version']} ya no llama")
            continue
        sub_diffs[sp_id] = WorkflowDiff(sp, SpecDiff(SIGNATURE, sp.spec, new_spec))
        reasons.extend(_unsafe(sub_diffs[sp_id], target["version"], within=sp.spec.name))
    if reasons:
        return report

    migrate_in_place(wf, new_def, (top, sub_diffs))
    reasons.extend(_stale(wf, target["version"]))
    if not reasons:
        reasons.extend(_restores(runner, wf, new_def))
    report["ok"] = not reasons
    report["active_after"] = _active(wf)
    return report


def migrate_in_place(wf, definition, diffs=None):
    """Point `wf` (and the processes it is running as call activities) at the
    specs of `definition`, keeping the due time of waiting timers. No checks:
    `_plan` decides first (the replay of a recorded migration calls this too).
    `diffs`: (WorkflowDiff of wf, {subprocess id: WorkflowDiff}) if known."""
    if diffs is None:
        diffs = (WorkflowDiff(wf, SpecDiff(SIGNATURE, wf.spec, definition.spec)),
                 {sp_id: WorkflowDiff(sp, SpecDiff(SIGNATURE, sp.spec, definition.subprocess_specs[sp.spec.name]))
                  for sp_id, sp in wf.subprocesses.items()})
    top, subs = diffs
    timers = {t.id: dict(t.internal_data) for t in all_tasks(wf) if t.state == TaskState.WAITING}
    migrate_workflow(top, wf, definition.spec)
    for sp_id, sp in wf.subprocesses.items():
        migrate_workflow(subs[sp_id], sp, definition.subprocess_specs[sp.spec.name])
    wf.subprocess_specs = definition.subprocess_specs
    _keep_timers(wf, timers)


def _unsafe(wdiff, version, within=None):
    where = f" (dentro de {within})" if within else ""
    for task in wdiff.removed:
        spec = task.task_spec
        if task.has_state(ACTIVE):
            yield (f"la instancia está en «{spec.bpmn_name or spec.name}» ({spec.name}){where}, que la versión "
                   f"{version} eliminó")
        elif task.has_state(TaskState.FINISHED_MASK):
            yield (f"la instancia ya pasó por «{spec.bpmn_name or spec.name}» ({spec.name}){where}, que la "
                   f"versión {version} eliminó; su historial no se podría conservar")
    for task in wdiff.changed:
        new = wdiff.alignment.get(task)
        if new is not None and task.has_state(ACTIVE) and type(new) is not type(task.task_spec):
            old_type = TYPE_NAMES.get(type(task.task_spec).__name__, type(task.task_spec).__name__)
            new_type = TYPE_NAMES.get(type(new).__name__, type(new).__name__)
            yield (f"la instancia está en «{task.task_spec.bpmn_name or task.task_spec.name}» "
                   f"({task.task_spec.name}){where}, que en la versión {version} cambió de tipo "
                   f"({old_type} → {new_type})")
        elif (new is not None and task.has_state(TaskState.STARTED) and isinstance(new, SubWorkflowTask)
              and new.spec != task.task_spec.spec):
            yield (f"la instancia está dentro de «{new.bpmn_name or new.name}», que en la versión {version} "
                   f"llama a otro proceso ({task.task_spec.spec} → {new.spec})")


def _stale(wf, version):
    """Tasks left pointing at a spec the new version does not have."""
    for task in all_tasks(wf):
        specs = task.workflow.spec.task_specs
        if specs.get(task.task_spec.name) is not task.task_spec:
            spec = task.task_spec
            yield (f"la instancia tiene pendiente «{spec.bpmn_name or spec.name}» ({spec.name}), que la versión "
                   f"{version} eliminó, después de un paso que aún no termina")


def _restores(runner, wf, definition):
    try:
        text = runner.serializer.dumps(wf)
        again = runner.serializer.loads(text, definition, runner.script_engine)
        if runner.serializer.dumps(again) != text:
            return ["el estado migrado no se restaura igual con la nueva versión"]
    except Exception as exc:  # any failure here means: not safe
        return [f"la nueva versión no puede cargar el estado de la instancia ({type(exc).__name__}: {exc})"]
    return []


def _keep_timers(wf, before):
    """A waiting timer keeps its due time: migrate_workflow re-predicts
    waiting branches, which would restart the wait from now."""
    for task in all_tasks(wf):
        old = before.get(task.id)
        if old and "event_value" in old and task.state == TaskState.WAITING:
            task.internal_data["event_value"] = old["event_value"]
            task.internal_data.pop("event_fired", None)


def _active(wf):
    return [{"id": t.task_spec.name, "name": t.task_spec.bpmn_name, "process": t.workflow.spec.name,
             "state": STATE_NAMES.get(t.state, TaskState.get_name(t.state))}
            for t in all_tasks(wf) if t.has_state(ACTIVE) and getattr(t.task_spec, "bpmn_id", None)]


def _changes(conn, row, current, target, called):
    """Spanish lines: what changes in the processes this instance runs."""
    lines = []
    pairs = [(row["process_id"], current["id"], target["id"])]
    old_called = dict(row["called_versions"] or {})
    pairs += [(pid, old_called.get(pid), vid) for pid, vid in called.items()]
    for pid, old_id, new_id in pairs:
        if old_id == new_id or old_id is None:
            continue
        xml = dict(conn.execute(select(process_versions.c.id, process_versions.c.xml)
                                .where(process_versions.c.id.in_([old_id, new_id]))).all())
        d = diff.diff_xml(xml[old_id], xml[new_id], pid)
        for item in d["added"]:
            lines.append(f"{pid}: se agrega {item['type_name']} {_name(item)}")
        for item in d["removed"]:
            lines.append(f"{pid}: se quita {item['type_name']} {_name(item)}")
        for item in d["changed"]:
            lines.extend(f"{pid}: {_name(item)}: {c['text']}" for c in item["changes"])
    return lines


def _name(item):
    return f"«{item['name']}» ({item['id']})" if item.get("name") else item["id"]


def _versions(conn, mapping):
    ids = list((mapping or {}).values())
    if not ids:
        return {}
    rows = conn.execute(select(process_versions.c.process_id, process_versions.c.version)
                        .where(process_versions.c.id.in_(ids))).all()
    return {pid: v for pid, v in rows}


# -- keeping the pending tables in step -------------------------------------------
def _pending_rows(conn, instance_id):
    return {"users": {r["id"]: dict(r) for r in conn.execute(
                select(user_tasks).where(user_tasks.c.instance_id == instance_id)).mappings()},
            "jobs": {r["id"]: dict(r) for r in conn.execute(
                select(jobs).where(jobs.c.instance_id == instance_id)).mappings()}}


def _resync(conn, row, wf, before, now):
    """Rows of tasks that stayed ready take the new version's name, lane,
    roles, form and topic. A claim survives unless the roles changed; a job
    whose topic changed starts again from its first attempt."""
    updated = []
    for task in all_tasks(wf):
        if task.state != TaskState.READY:
            continue
        tid, spec = str(task.id), task.task_spec
        if isinstance(spec, UserTask) and tid in before["users"]:
            old = before["users"][tid]
            roles = task_roles(spec)
            values = {"process_id": task.workflow.spec.name, "element_id": spec.bpmn_id, "name": spec.bpmn_name,
                      "lane": spec.lane, "roles": ",".join(roles), "form": public_fields(getattr(spec, "form_fields", []))}
            if any(old[k] != v for k, v in values.items()):
                if values["roles"] != old["roles"]:
                    values.update(claimed_by=None, claimed_at=None)
                    conn.execute(delete(user_task_roles).where(user_task_roles.c.task_id == tid))
                    if roles:
                        conn.execute(user_task_roles.insert(), [{"task_id": tid, "role": r, "created_at": old["created_at"]}
                                                                for r in roles])
                conn.execute(user_tasks.update().where(user_tasks.c.id == tid).values(**values))
                updated.append(tid)
        elif isinstance(spec, ExternalTask) and tid in before["jobs"]:
            old = before["jobs"][tid]
            values = {"process_id": task.workflow.spec.name, "element_id": spec.bpmn_id, "name": spec.bpmn_name,
                      "topic": spec.topic}
            if any(old[k] != v for k, v in values.items()):
                if values["topic"] != old["topic"]:
                    values.update(status="pendiente", attempts=0, last_error=None, due_at=now)
                conn.execute(jobs.update().where(jobs.c.id == tid).values(**values))
                updated.append(tid)
    return updated
