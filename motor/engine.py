"""The engine's service API: the only door the CLI and the web app use.

Every method takes the acting `User` and checks its roles before touching
anything; every method that changes state runs in one transaction.
"""
from datetime import timedelta
from uuid import UUID

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import and_, func, literal_column, or_, select, union

from . import audit, definitions, events, migration
from . import export as export_mod, indicators as indicators_mod, replay as replay_mod
from . import versions as versions_mod
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
            wf_data, active = _workflow_data(loaded.workflow), _active_elements(loaded.workflow)
            self.runner.release(loaded)
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
            "data": wf_data,
            "pending_tasks": [_task_summary(t) for t in pending],
            "service_tasks": [_job_summary(j) for j in job_rows],
            "incidents": [_job_summary(j) for j in job_rows if j["status"] == "incidente"],
            "orden_servicio": _orden(orden),
            "monitoring_checks": [_plain(c) for c in checks],
            "no_conformidades": [_plain(n) for n in ncs],
            "active_elements": active,
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
            self.runner.release(loaded)
            summary["folio"] = loaded.row["folio"]
            summary["nombre_servicio"] = loaded.row["nombre_servicio"]
            return summary

    def claim(self, actor, task_id):
        with self.db.transaction() as conn:
            row = self._task_row(conn, task_id, actor)
            events.lock_chain(conn, row["instance_id"])  # instance row first, as steps do; then re-read
            row = self._task_row(conn, task_id, actor)
            if row["claimed_by"] not in (None, actor.username):
                raise Conflict(f"La tarea ya fue tomada por {row['claimed_by']}")
            conn.execute(user_tasks.update().where(user_tasks.c.id == task_id).values(claimed_by=actor.username, claimed_at=utcnow()))
            events.append(conn, row["instance_id"], [_task_event("task_claimed", row, actor)])

    def release(self, actor, task_id):
        with self.db.transaction() as conn:
            row = self._task_row(conn, task_id, actor)
            events.lock_chain(conn, row["instance_id"])  # instance row first, as steps do; then re-read
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

    # -- queries for the web app (tables only: no workflow is deserialized) --
    def queue(self, actor, process_id=None, claimed=None, limit=25, offset=0, overdue_days=3, count_cap=1000):
        """One page of the actor's pending user tasks, oldest first, with counts.

        `claimed`: None (all), "sin_tomar" or "mias". Visibility is that of
        `tasks()`. Every query walks an index in order with a LIMIT, and
        counts stop at `count_cap` + 1 (more means "more than the cap"), so a
        page costs about the same with 1,000 or 50,000 open tasks.
        """
        if actor is None:
            raise NotAllowed("Inicie sesión para ver sus tareas")
        if claimed not in (None, "sin_tomar", "mias"):
            raise InvalidData({"estado": "Use sin_tomar o mias"})
        limit, offset = max(1, min(int(limit), 200)), max(0, int(offset))
        cutoff = utcnow() - timedelta(days=overdue_days)
        with self.db.read() as conn:
            keys = _queue_keys(conn, _queue_selects(actor, process_id, claimed, None, offset + limit + 1))
            page = keys[offset:offset + limit]
            rows = {}
            if page:
                q = (select(user_tasks, instances.c.folio, instances.c.nombre_servicio, process_versions.c.version)
                     .join(instances, instances.c.id == user_tasks.c.instance_id)
                     .join(process_versions, process_versions.c.id == instances.c.version_id)
                     .where(user_tasks.c.id.in_([k[1] for k in page])))
                rows = {r["id"]: dict(r) for r in conn.execute(q).mappings()}
            counts = {name: _capped_count(conn, _queue_selects(actor, process_id, state, before, count_cap + 1))
                      for name, state, before in (("todas", None, None), ("sin_tomar", "sin_tomar", None),
                                                  ("mias", "mias", None), ("vencidas", claimed, cutoff))}
        items = []
        for _, task_id in page:
            row = rows.get(task_id)
            if row is not None:  # completed between the two reads
                items.append({**_task_summary(row), "overdue": row["created_at"] < cutoff,
                              "may_work": _may_work(actor, row)})
        return {"items": items, "counts": counts, "count_cap": count_cap, "limit": limit, "offset": offset,
                "has_more": len(keys) > offset + limit, "overdue_days": overdue_days}

    def requests(self, actor, dependencia=None, status=None, limit=25, offset=0):
        """A page of requests (instances), newest first, and where each waits:
        pending user tasks, service tasks and timers. A solicitante sees only
        its own dependencia; READ_ALL_ROLES see all, optionally filtered."""
        _require(actor, {"solicitante", *READ_ALL_ROLES}, "consultar las solicitudes")
        if not actor.has(*READ_ALL_ROLES):
            if dependencia not in (None, "", actor.dependencia):
                raise NotAllowed("Un solicitante solo consulta las solicitudes de su dependencia")
            dependencia = actor.dependencia
        if status not in (None, "", "en_curso", "completada"):
            raise InvalidData({"estado": "Use en_curso o completada"})
        limit, offset = max(1, min(int(limit), 200)), max(0, int(offset))
        i = instances.c
        conds = [c for c in (i.dependencia == dependencia if dependencia else None,
                             i.status == status if status else None) if c is not None]
        with self.db.read() as conn:
            total = conn.execute(select(func.count()).select_from(instances).where(*conds)).scalar()
            rows = [dict(r) for r in conn.execute(
                select(i.id, i.process_id, i.status, i.dependencia, i.nombre_servicio, i.folio, i.started_by,
                       i.started_at, i.completed_at, i.next_timer_at, ordenes_servicio.c.estado.label("orden_estado"))
                .outerjoin(ordenes_servicio, ordenes_servicio.c.instance_id == i.id)
                .where(*conds).order_by(i.started_at.desc(), i.id.desc()).limit(limit).offset(offset)).mappings()]
            waiting = {r["id"]: [] for r in rows}
            if rows:
                for t in conn.execute(select(user_tasks).where(user_tasks.c.instance_id.in_(waiting))
                                      .order_by(user_tasks.c.created_at)).mappings():
                    waiting[t["instance_id"]].append({
                        "kind": "tarea", "id": t["id"], "process": t["process_id"], "element_id": t["element_id"],
                        "name": t["name"], "roles": t["roles"].split(","), "claimed_by": t["claimed_by"],
                        "since": _iso(t["created_at"])})
                for j in conn.execute(select(jobs).where(jobs.c.instance_id.in_(waiting))
                                      .order_by(jobs.c.created_at)).mappings():
                    waiting[j["instance_id"]].append({
                        "kind": "servicio", "id": j["id"], "process": j["process_id"], "element_id": j["element_id"],
                        "name": j["name"], "status": j["status"], "since": _iso(j["created_at"])})
        items = []
        for r in rows:
            if r["next_timer_at"] is not None:
                waiting[r["id"]].append({"kind": "temporizador", "name": "Espera programada",
                                         "due": _iso(r["next_timer_at"])})
            items.append({"id": r["id"], "process": r["process_id"], "status": r["status"],
                          "dependencia": r["dependencia"], "nombre_servicio": r["nombre_servicio"],
                          "folio": r["folio"], "orden_estado": r["orden_estado"], "started_by": r["started_by"],
                          "started_at": _iso(r["started_at"]), "completed_at": _iso(r["completed_at"]),
                          "waiting": waiting[r["id"]]})
        return {"items": items, "total": total, "limit": limit, "offset": offset, "dependencia": dependencia}

    def process_xml(self, actor, instance_id, process_id=None):
        """The BPMN XML an instance runs on: its own version of the root process
        or of a process it calls (pinned at start), for drawing the diagram."""
        with self.db.read() as conn:
            row = conn.execute(select(instances.c.id, instances.c.dependencia, instances.c.process_id,
                                      instances.c.version_id, instances.c.called_versions)
                               .where(instances.c.id == instance_id)).mappings().first()
            if row is None:
                raise NotFound(f"No existe la instancia {instance_id}")
            _require_read(actor, row)
            called = dict(row["called_versions"] or {})
            pid = process_id or row["process_id"]
            version_id = row["version_id"] if pid == row["process_id"] else called.get(pid)
            if version_id is None:
                raise NotFound(f"La instancia {instance_id} no usa el proceso {pid}")
            v = conn.execute(select(process_versions.c.process_id, process_versions.c.name, process_versions.c.version,
                                    process_versions.c.file_name, process_versions.c.xml)
                             .where(process_versions.c.id == version_id)).mappings().one()
        return {"process_id": v["process_id"], "name": v["name"], "version": v["version"], "file": v["file_name"],
                "xml": v["xml"], "root": row["process_id"], "called": sorted(called)}

    def dependencias(self, actor):
        """Known dependencias (of users and of requests), for choosing one."""
        _require(actor, {"mesa_ayuda", *READ_ALL_ROLES}, "consultar las dependencias")
        with self.db.read() as conn:
            from .db import users as users_table
            names = set(conn.execute(select(users_table.c.dependencia).distinct()).scalars())
            names |= set(conn.execute(select(instances.c.dependencia).distinct()).scalars())
        return sorted(n for n in names if n)

    # -- versions, drafts and migration (process analysts) --------------------
    def processes(self, actor):
        """Deployed processes: latest version, instance totals, pending draft."""
        _require(actor, READ_ALL_ROLES, "consultar los procesos")
        with self.db.read() as conn:
            return versions_mod.processes(conn)

    def version_history(self, actor, process_id):
        """Versions of a process (who, when, hash) with running/finished counts."""
        _require(actor, READ_ALL_ROLES, "consultar las versiones")
        with self.db.read() as conn:
            return versions_mod.history(conn, process_id)

    def version_xml(self, actor, process_id, version=None):
        _require(actor, READ_ALL_ROLES, "descargar diagramas")
        with self.db.read() as conn:
            row = versions_mod.version_row(conn, process_id, version)
        return {"process_id": process_id, "version": row["version"], "file": row["file_name"], "xml": row["xml"]}

    def version_diff(self, actor, process_id, from_version, to_version):
        _require(actor, READ_ALL_ROLES, "comparar versiones")
        with self.db.read() as conn:
            return versions_mod.compare(conn, process_id, from_version, to_version)

    def draft(self, actor, process_id):
        """The process's draft, or None; `xml` falls back to the latest version."""
        _require(actor, DEPLOY_ROLES, "editar procesos")
        with self.db.read() as conn:
            latest = versions_mod.version_row(conn, process_id)
            found = versions_mod.get_draft(conn, process_id)
        return {"process_id": process_id, "file": latest["file_name"], "latest": latest["version"],
                "draft": found, "xml": found["xml"] if found else latest["xml"]}

    def save_draft(self, actor, process_id, xml):
        _require(actor, DEPLOY_ROLES, "editar procesos")
        with self.db.transaction() as conn:
            return versions_mod.save_draft(conn, process_id, xml, actor.username)

    def discard_draft(self, actor, process_id):
        _require(actor, DEPLOY_ROLES, "editar procesos")
        with self.db.transaction() as conn:
            versions_mod.delete_draft(conn, process_id)

    def deploy_preview(self, actor, files):
        """Validate files; per process, the version it would become and its diff."""
        _require(actor, DEPLOY_ROLES, "desplegar procesos")
        with self.db.read() as conn:
            problems, checked = validate(files, self.handlers.topics(), definitions.deployed_ids(conn))
            return {"problems": problems, "processes": versions_mod.deploy_preview(conn, checked)}

    def deploy_draft(self, actor, process_id, allow_stale=False):
        """Validate the draft and deploy it as a new version, in one step."""
        _require(actor, DEPLOY_ROLES, "desplegar procesos")
        with self.db.transaction() as conn:
            found = versions_mod.get_draft(conn, process_id)
            if found is None:
                raise NotFound(f"El proceso {process_id} no tiene un borrador guardado")
            latest = versions_mod.version_row(conn, process_id)
            if found["base_version"] != latest["version"] and not allow_stale:
                raise Conflict(f"El borrador parte de la versión {found['base_version']}, pero la vigente ya es la "
                               f"{latest['version']}: compare las versiones antes de desplegarlo")
            problems, checked = validate([(latest["file_name"], found["xml"].encode("utf-8"))],
                                         self.handlers.topics(), definitions.deployed_ids(conn))
            if problems:
                raise InvalidDiagram(problems)
            results = definitions.deploy_checked(conn, checked, actor.username)
            versions_mod.delete_draft(conn, process_id)
            return results

    def running_instances(self, actor, process_id):
        """Running instances of a process, with version and waiting steps."""
        _require(actor, DEPLOY_ROLES, "migrar instancias")
        with self.db.read() as conn:
            return versions_mod.running(conn, process_id)

    def migration_preview(self, actor, instance_ids, version):
        """Per instance: would moving it to `version` be safe, and what changes."""
        _require(actor, DEPLOY_ROLES, "migrar instancias")
        out = []
        for iid in instance_ids:
            with self.db.read() as conn:
                out.append(_migration_result(iid, version, lambda: migration.preview(conn, self.runner, iid, version)))
        return out

    def migrate(self, actor, instance_ids, version):
        """Move each instance to `version`, each in its own engine step."""
        _require(actor, DEPLOY_ROLES, "migrar instancias")
        out = []
        for iid in instance_ids:
            def one():
                with self.db.transaction() as conn:
                    return migration.apply(conn, self.runner, iid, version, actor.username)
            out.append(_migration_result(iid, version, one))
        return out

    # -- audit, replay, exports and indicators (read-only; see motor/audit.py,
    #    replay.py, export.py, indicators.py) --------------------------------
    def audit_verify(self, actor, instance_id=None, heads=None):
        _require(actor, audit.AUDIT_ROLES, "verificar el historial")
        with self.db.read() as conn:
            return audit.verify(conn, instance_id, heads)

    def audit_heads(self, actor, instance_id=None):
        _require(actor, audit.AUDIT_ROLES, "consultar las cabezas del historial")
        with self.db.read() as conn:
            return audit.heads(conn, instance_id)

    def audit_search(self, actor, filters=None, limit=25, offset=0, zone=export_mod.ZONA):
        _require(actor, audit.AUDIT_ROLES, "buscar instancias para auditoría")
        f = filters if isinstance(filters, export_mod.Filters) else export_mod.Filters.parse(filters)
        with self.db.read() as conn:
            return export_mod.search(conn, f, max(1, min(int(limit), 200)), max(0, int(offset)), zone)

    def replay(self, actor, instance_id, step, with_xml=False):
        _require(actor, audit.AUDIT_ROLES, "reproducir instancias")
        with self.db.read() as conn:
            return replay_mod.load_state(conn, instance_id, step, with_xml)

    def replay_verify(self, actor, instance_id):
        _require(actor, audit.AUDIT_ROLES, "re-ejecutar instancias")
        with self.db.read() as conn:
            return replay_mod.verify_instance(conn, self.runner, instance_id)

    def export(self, actor, fmt, filters=None, zone=export_mod.ZONA):
        """An iterator of text chunks (XES or CSV); the query runs as it is consumed."""
        _require(actor, audit.AUDIT_ROLES, "exportar el historial")
        if fmt not in export_mod.FORMATS:
            raise InvalidData({"formato": "Use xes o csv"})
        f = filters if isinstance(filters, export_mod.Filters) else export_mod.Filters.parse(filters)

        def chunks():
            with self.db.read() as conn:
                yield from export_mod.FORMATS[fmt](conn, f, zone)
        return chunks()

    def indicators(self, actor, anio=None, desde=None, hasta=None, dependencia=None, zone=indicators_mod.ZONA):
        """Section 9 and companions per quarter; `anio` or `desde`/`hasta` (dates,
        widened to whole quarters); by default the current year."""
        _require(actor, indicators_mod.DIRECTOR_ROLES, "consultar los indicadores")
        if desde is None or hasta is None:
            desde, hasta = indicators_mod.year_range(int(anio or utcnow().year))
        if desde > hasta:
            raise InvalidData({"hasta": "La fecha final es anterior a la inicial"})
        with self.db.read() as conn:
            return indicators_mod.compute(conn, desde, hasta, dependencia or None, zone)

    def worker(self, worker_id=None):
        from .worker import Worker
        return Worker(self, worker_id)


_READY = TaskState.READY
_ACTIVE = TaskState.READY | TaskState.STARTED | TaskState.WAITING


def _migration_result(instance_id, version, run):
    """One instance's migration report; a refusal is a result, not an error."""
    try:
        return run()
    except migration.Refused as exc:
        return {"to_version": version, **exc.report, "ok": False, "migrated": False}
    except (NotFound, Conflict) as exc:
        return {"instance": instance_id, "to_version": version, "ok": False, "migrated": False, "reasons": [exc.message]}


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


def _active_elements(wf):
    return sorted({t.task_spec.bpmn_id for t in wf.get_tasks(state=_ACTIVE) if getattr(t.task_spec, "bpmn_id", None)})


def _workflow_data(wf):
    """The data of the most recently completed task (what the process knows now)."""
    last = wf.last_task
    latest = None
    for t in all_tasks(wf):
        if t.state == TaskState.COMPLETED and (latest is None or t.last_state_change > latest.last_state_change):
            latest = t
    return dict((latest or last or wf.task_tree).data)


# -- the work queue's SQL (see Engine.queue) ----------------------------------
def _queue_selects(actor, process_id, claimed, created_before, limit):
    """The actor's visible pending tasks matching the filters, as SELECTs of
    (created, task_id), each ordered oldest first and LIMITed; the union of
    their rows (deduplicated) is the answer. Each one walks an index in order:
    ix_user_task_roles_role per role, ix_user_tasks_claimed for "mias",
    ix_user_tasks_created for an admin (who sees every task)."""
    r, t = user_task_roles.c, user_tasks.c
    on_task = [t.process_id == process_id] if process_id else []
    if claimed == "sin_tomar":
        on_task.append(t.claimed_by.is_(None))
    branches = _queue_branches(actor)
    if claimed == "mias" or actor.has("admin"):
        conds = list(on_task)
        if claimed == "mias":
            conds.append(t.claimed_by == actor.username)
        if created_before is not None:
            conds.append(t.created_at < created_before)
        if not actor.has("admin"):
            if not branches:
                return []
            conds.append(select(r.task_id).where(r.task_id == t.id, or_(*[b for b, _ in branches])).exists())
        return [select(t.created_at.label("created"), t.id.label("task_id")).where(*conds)
                .order_by(t.created_at, t.id).limit(limit)]
    selects = []
    for branch, reads_task in branches:
        conds = [branch, *on_task]
        if created_before is not None:
            conds.append(r.created_at < created_before)  # = the task's created_at (written together)
        q = select(r.created_at.label("created"), r.task_id.label("task_id"))
        if on_task or reads_task:  # join the task row only when a condition reads it
            q = q.join(user_tasks, t.id == r.task_id)
        selects.append(q.where(*conds).order_by(r.created_at, r.task_id).limit(limit))
    return selects


def _queue_branches(actor):
    """Visibility (the rule of `_visible_tasks`) as one (condition on a
    user_task_roles row, whether it also reads the task row) per role."""
    r, t = user_task_roles.c, user_tasks.c
    branches = [(r.role == role, False) for role in sorted(actor.roles - {"solicitante"})]
    if actor.has("solicitante"):
        branches.append((and_(r.role == "solicitante", t.dependencia == actor.dependencia), True))
    return branches


def _queue_keys(conn, selects):
    """(created, task_id) of the union of `selects`, oldest first."""
    found = {}
    for q in selects:
        for created, task_id in conn.execute(q):
            found[task_id] = (created, task_id)
    return sorted(found.values())


def _capped_count(conn, selects):
    """How many distinct tasks `selects` (each LIMITed to cap + 1) yield."""
    if not selects:
        return 0
    if len(selects) == 1:  # no duplicates to remove: count rows, read only the index
        inner = selects[0].with_only_columns(literal_column("1"), maintain_column_froms=True).order_by(None)
    else:
        inner = union(*[select(q.order_by(None).subquery().c.task_id) for q in selects])
    return conn.execute(select(func.count()).select_from(inner.subquery())).scalar()
