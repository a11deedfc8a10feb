"""The engine's service API: the only door the CLI and the web app use.

Every method takes the acting `User` and checks its roles before touching
anything; every method that changes state runs in one transaction.
"""
from datetime import timedelta
from uuid import UUID

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import and_, func, or_, select

from . import definitions, events
from .bpmn import StateSerializer
from .db import (Database, instances, jobs, monitoring_checks, no_conformidades, ordenes_servicio, outbox,
                 portal_catalog, process_versions, user_task_roles, user_tasks, utcnow)
from .errors import Conflict, InvalidData, InvalidDiagram, NotAllowed, NotFound
from .expressions import script_engine
from .forms import clean_submission, public_fields, with_values
from .handlers import default_registry
from .instances import Runner, all_tasks
from .roles import DEPLOY_ROLES, READ_ALL_ROLES
from . import users as users_mod
from .users import User
from .validation import validate

SYSTEM = User("sistema", frozenset({"admin"}))


class Engine:
    def __init__(self, config, db=None, handlers=None):
        self.config = config
        self.db = db or Database(config.database_url, schema=config.database_schema)
        self.handlers = handlers or default_registry()
        self.runner = Runner(definitions.SpecCache(), StateSerializer(), script_engine(config.constants))

    # -- set-up -------------------------------------------------------------
    def init(self):
        self.db.create_schema()

    def add_user(self, actor, username, roles, dependencia=None, password=None, nombre=None, email=None):
        _require(actor, {"admin"}, "administrar usuarios")
        with self.db.transaction() as conn:
            return users_mod.add_user(conn, username, roles, dependencia, password, nombre, email)

    def user(self, username):
        with self.db.read() as conn:
            return users_mod.get_user(conn, username)

    def authenticate(self, username, password):
        with self.db.read() as conn:
            return users_mod.authenticate(conn, username, password)

    def users(self, actor):
        _require(actor, {"admin"}, "ver los usuarios")
        with self.db.read() as conn:
            return users_mod.list_users(conn)

    # -- definitions --------------------------------------------------------
    def validate(self, files):
        with self.db.read() as conn:
            known = definitions.deployed_ids(conn)
        problems, _ = validate(files, self.handlers.topics(), known)
        return problems

    def deploy(self, actor, files):
        """Validate all files, then store them all or nothing."""
        _require(actor, DEPLOY_ROLES, "desplegar procesos")
        with self.db.transaction() as conn:
            problems, checked = validate(files, self.handlers.topics(), definitions.deployed_ids(conn))
            if problems:
                raise InvalidDiagram(problems)
            return definitions.deploy_checked(conn, checked, actor.username)

    def versions(self, actor, process_id=None):
        _require(actor, READ_ALL_ROLES, "consultar las versiones")
        q = select(process_versions.c.id, process_versions.c.process_id, process_versions.c.name,
                   process_versions.c.version, process_versions.c.content_hash, process_versions.c.file_name,
                   process_versions.c.deployed_at, process_versions.c.deployed_by)
        if process_id:
            q = q.where(process_versions.c.process_id == process_id)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(q.order_by(process_versions.c.process_id, process_versions.c.version)).mappings()]

    def start_form(self, actor, process_id):
        with self.db.read() as conn:
            definition, _, _ = self._latest_definition(conn, process_id)
        _require(actor, set(definition.starter_groups), f"iniciar el proceso {process_id}")
        return public_fields(definition.start_form)

    # -- instances ----------------------------------------------------------
    def start(self, actor, process_id, data):
        with self.db.transaction() as conn:
            definition, version, called = self._latest_definition(conn, process_id)
            if not definition.starter_groups:
                raise NotAllowed(f"El proceso {process_id} solo se inicia desde otro proceso")
            _require(actor, set(definition.starter_groups), f"iniciar el proceso {process_id}")
            data = dict(data or {})
            if actor.has("solicitante") and not actor.has("mesa_ayuda", "admin"):
                data.setdefault("dependencia", actor.dependencia)
                if data["dependencia"] != actor.dependencia:
                    raise NotAllowed("Un solicitante solo puede solicitar servicios para su propia dependencia")
            clean = clean_submission(with_values(public_fields(definition.start_form), {}), data)
            clean["solicitado_por"] = actor.username
            return self.runner.start(conn, version, called, clean, actor.username)

    def _latest_definition(self, conn, process_id):
        version = definitions.latest(conn, process_id)
        called = definitions.resolve_called(conn, version)
        return self.runner.specs.get(conn, version["id"], called), version, called

    def show(self, actor, instance_id):
        with self.db.read() as conn:
            loaded = self.runner.load(conn, instance_id)
            row = loaded.row
            _require_read(actor, row)
            version = conn.execute(select(process_versions.c.version).where(process_versions.c.id == row["version_id"])).scalar()
            pending = [dict(r) for r in conn.execute(select(user_tasks).where(user_tasks.c.instance_id == instance_id)).mappings()]
            job_rows = [dict(r) for r in conn.execute(select(jobs).where(jobs.c.instance_id == instance_id)).mappings()]
            orden = conn.execute(select(ordenes_servicio).where(ordenes_servicio.c.instance_id == instance_id)).mappings().first()
            checks = [dict(r) for r in conn.execute(select(monitoring_checks).where(
                monitoring_checks.c.instance_id == instance_id).order_by(monitoring_checks.c.id)).mappings()]
            ncs = [dict(r) for r in conn.execute(select(no_conformidades).where(
                no_conformidades.c.instance_id == instance_id).order_by(no_conformidades.c.id)).mappings()]
        return {
            "id": row["id"], "process": row["process_id"], "version": version, "status": row["status"],
            "dependencia": row["dependencia"], "folio": row["folio"], "started_by": row["started_by"],
            "started_at": _iso(row["started_at"]), "completed_at": _iso(row["completed_at"]),
            "next_timer_at": _iso(row["next_timer_at"]),
            "data": _workflow_data(loaded.workflow),
            "pending_tasks": [_task_summary(t) for t in pending],
            "service_tasks": [_job_summary(j) for j in job_rows],
            "incidents": [_job_summary(j) for j in job_rows if j["status"] == "incidente"],
            "orden_servicio": _orden(orden),
            "monitoring_checks": [_plain(c) for c in checks],
            "no_conformidades": [_plain(n) for n in ncs],
            "active_elements": sorted({t.task_spec.bpmn_id for t in loaded.workflow.get_tasks(state=_ACTIVE)
                                       if getattr(t.task_spec, "bpmn_id", None)}),
        }

    def history(self, actor, instance_id):
        with self.db.read() as conn:
            row = conn.execute(select(instances.c.id, instances.c.dependencia).where(instances.c.id == instance_id)).mappings().first()
            if row is None:
                raise NotFound(f"No existe la instancia {instance_id}")
            _require_read(actor, row)
            return events.history(conn, instance_id)

    # -- user tasks ---------------------------------------------------------
    def tasks(self, actor, instance_id=None, process_id=None, limit=200, offset=0):
        q = (select(user_tasks, instances.c.folio, instances.c.nombre_servicio, instances.c.process_id.label("root_process"),
                    process_versions.c.version)
             .join(instances, instances.c.id == user_tasks.c.instance_id)
             .join(process_versions, process_versions.c.id == instances.c.version_id)
             .where(_visible_tasks(actor)).order_by(user_tasks.c.created_at, user_tasks.c.id)
             .limit(limit).offset(offset))
        if instance_id is not None:
            q = q.where(user_tasks.c.instance_id == instance_id)
        if process_id:
            q = q.where(user_tasks.c.process_id == process_id)
        with self.db.read() as conn:
            return [_task_summary(r) for r in conn.execute(q).mappings()]

    def task(self, actor, task_id):
        """One pending task with its form filled with current values."""
        with self.db.read() as conn:
            row = self._task_row(conn, task_id, actor)
            loaded = self.runner.load(conn, row["instance_id"])
            task = loaded.workflow.get_task_from_id(UUID(task_id))
            summary = _task_summary(row)
            summary["form"] = with_values(row["form"], task.data)
            summary["folio"] = loaded.row["folio"]
            summary["nombre_servicio"] = loaded.row["nombre_servicio"]
            return summary

    def claim(self, actor, task_id):
        with self.db.transaction() as conn:
            row = self._task_row(conn, task_id, actor)
            if row["claimed_by"] not in (None, actor.username):
                raise Conflict(f"La tarea ya fue tomada por {row['claimed_by']}")
            conn.execute(user_tasks.update().where(user_tasks.c.id == task_id).values(claimed_by=actor.username, claimed_at=utcnow()))
            events.append(conn, row["instance_id"], [_task_event("task_claimed", row, actor)])

    def release(self, actor, task_id):
        with self.db.transaction() as conn:
            row = self._task_row(conn, task_id, actor)
            if row["claimed_by"] != actor.username and not actor.has("admin"):
                raise Conflict("Solo quien tomó la tarea puede liberarla")
            conn.execute(user_tasks.update().where(user_tasks.c.id == task_id).values(claimed_by=None, claimed_at=None))
            events.append(conn, row["instance_id"], [_task_event("task_released", row, actor)])

    def complete(self, actor, task_id, data):
        with self.db.transaction() as conn:
            row = self._task_row(conn, task_id, actor)
            if row["claimed_by"] not in (None, actor.username):
                raise Conflict(f"La tarea está reservada para {row['claimed_by']}")
            loaded = self.runner.load(conn, row["instance_id"])
            task = loaded.workflow.get_task_from_id(UUID(task_id))
            if not task.has_state(_READY):
                raise Conflict("La tarea ya no está lista para completarse")
            clean = clean_submission(with_values(row["form"], task.data), data)

            def action(wf):
                task.data.update(clean)
                task.run()
                return [{**_task_event("task_completed", row, actor), "data": {"form": clean}}]

            self.runner.step(conn, loaded, action)
            return {"instance": row["instance_id"]}

    def _task_row(self, conn, task_id, actor):
        row = conn.execute(select(user_tasks).where(user_tasks.c.id == str(task_id))).mappings().first()
        if row is None:
            done = conn.execute(select(events.events.c.id).where(events.events.c.task_id == str(task_id)).limit(1)).first()
            if done is not None:
                raise Conflict("La tarea ya fue completada o dejó de estar pendiente")
            raise NotFound(f"No existe la tarea {task_id}")
        row = dict(row)
        if not _may_work(actor, row):
            raise NotAllowed("Su rol no le permite trabajar en esta tarea")
        return row

    # -- administration -----------------------------------------------------
    def incidents(self, actor):
        _require(actor, {"admin"}, "ver los incidentes")
        with self.db.read() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.status == "incidente").order_by(jobs.c.created_at)).mappings()
            return [_job_summary(r) for r in rows]

    def retry_incident(self, actor, job_id):
        _require(actor, {"admin"}, "reintentar incidentes")
        with self.db.transaction() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if row is None:
                raise NotFound(f"No existe la tarea de servicio {job_id}")
            if row["status"] != "incidente":
                raise Conflict("La tarea de servicio no tiene un incidente abierto")
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                status="pendiente", attempts=0, due_at=utcnow(), locked_by=None, locked_until=None))
            events.append(conn, row["instance_id"], [{
                "type": "incident_retried", "process_id": row["process_id"], "element_id": row["element_id"],
                "element_name": row["name"], "task_id": row["id"], "username": actor.username}])

    def outbox(self, actor, limit=200):
        _require(actor, {"admin"}, "ver el buzón de salida")
        with self.db.read() as conn:
            rows = conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(limit)).mappings()
            return [_plain(dict(r)) for r in rows]

    def portal_entries(self):
        """The public catalog (no sign-in needed)."""
        with self.db.read() as conn:
            rows = conn.execute(select(portal_catalog).order_by(portal_catalog.c.dependencia, portal_catalog.c.nombre)).mappings()
            return [_plain(dict(r)) for r in rows]

    def worker(self, worker_id=None):
        from .worker import Worker
        return Worker(self, worker_id)


_READY = TaskState.READY
_ACTIVE = TaskState.READY | TaskState.STARTED | TaskState.WAITING


def _require(actor, roles, what):
    if actor is None or not actor.has(*roles):
        raise NotAllowed(f"Su rol no le permite {what}")


def _require_read(actor, row):
    if actor is None:
        raise NotAllowed("Inicie sesión para consultar instancias")
    if actor.has(*READ_ALL_ROLES):
        return
    if actor.has("solicitante") and row["dependencia"] == actor.dependencia:
        return
    raise NotAllowed("Su rol no le permite consultar esta instancia")


def _may_work(actor, row):
    roles = set(row["roles"].split(","))
    others = (roles - {"solicitante"}) & actor.roles
    if others:
        return True
    return "solicitante" in roles and actor.has("solicitante") and row["dependencia"] == actor.dependencia


def _visible_tasks(actor):
    if actor.has("admin"):
        return user_tasks.c.id.is_not(None)
    general = [r for r in actor.roles if r != "solicitante"]
    conds = []
    if general:
        conds.append(user_tasks.c.id.in_(select(user_task_roles.c.task_id).where(user_task_roles.c.role.in_(general))))
    if actor.has("solicitante"):
        conds.append(and_(user_tasks.c.dependencia == actor.dependencia, user_tasks.c.id.in_(
            select(user_task_roles.c.task_id).where(user_task_roles.c.role == "solicitante"))))
    return or_(*conds) if conds else user_tasks.c.id.is_(None)


def _task_event(kind, row, actor):
    return {"type": kind, "process_id": row["process_id"], "element_id": row["element_id"],
            "element_name": row["name"], "task_id": row["id"], "username": actor.username}


def _task_summary(r):
    return {
        "id": r["id"], "instance": r["instance_id"], "process": r["process_id"], "version": r.get("version"),
        "element_id": r["element_id"], "name": r["name"], "roles": r["roles"].split(","),
        "dependencia": r["dependencia"], "claimed_by": r["claimed_by"], "created": _iso(r["created_at"]),
        "folio": r.get("folio"), "nombre_servicio": r.get("nombre_servicio"), "form": r["form"],
    }


def _job_summary(j):
    return {"id": j["id"], "instance": j["instance_id"], "process": j["process_id"], "element_id": j["element_id"],
            "name": j["name"], "topic": j["topic"], "status": j["status"], "attempts": j["attempts"],
            "due_at": _iso(j["due_at"]), "last_error": j["last_error"]}


def _orden(row):
    return _plain(dict(row)) if row is not None else None


def _plain(d):
    return {k: (_iso(v) if hasattr(v, "isoformat") else v) for k, v in d.items()}


def _iso(value):
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def _workflow_data(wf):
    """The data of the most recently completed task (what the process knows now)."""
    last = wf.last_task
    latest = None
    for t in all_tasks(wf):
        if t.state == TaskState.COMPLETED and (latest is None or t.last_state_change > latest.last_state_change):
            latest = t
    return dict((latest or last or wf.task_tree).data)
