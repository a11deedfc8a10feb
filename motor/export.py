"""Instance search for auditors, and the event history as XES or CSV.

Exports are generators of text chunks over one streamed query (server-side
cursor on PostgreSQL, `yield_per` batches), so an export of every instance
never holds more than a batch of rows in memory. One stored event is one
XES event and one CSV row, so counts reconcile with `motor audit verify`.

XES follows IEEE 1849-2016 with the Concept, Time, Organizational and
Lifecycle extensions: a trace per instance (concept:name = folio, or the
instance id before the orden de servicio exists); events carry concept:name
(the BPMN element's name, else the event type), time:timestamp (UTC),
org:resource (the user, absent for automatic steps), org:role (see
`_Roles`) and lifecycle:transition (start when an element becomes
ready/waits, complete when it finishes; claims are assign/reassign,
incidents suspend/resume).
"""
import csv
import io
import json
import re
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from xml.sax.saxutils import quoteattr
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from .db import events, instances, ordenes_servicio, process_versions, user_roles, users
from .errors import InvalidData

ZONA = "America/Mazatlan"   # the state's time zone: dates typed by users are local days
STATUSES = ("en_curso", "completada")
BATCH = 500

LIFECYCLE = {
    "instance_created": "start", "task_ready": "start", "service_task_ready": "start",
    "call_activity_entered": "start", "timer_waiting": "start",
    "task_completed": "complete", "service_task_executed": "complete", "element_completed": "complete",
    "gateway_decision": "complete", "call_activity_left": "complete", "instance_completed": "complete",
    "mail_sent": "complete", "instance_migrated": "complete",
    "task_claimed": "assign", "task_released": "reassign", "incident": "suspend", "incident_retried": "resume",
}


@dataclass
class Filters:
    """What an auditor searches by; every field optional. `desde`/`hasta` are
    local days (inclusive) of the instance's start."""
    instance: int | None = None
    folio: str | None = None
    dependencia: str | None = None
    desde: date | None = None
    hasta: date | None = None
    estado: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, values):
        """From strings (query args, CLI options); errors in Spanish by field."""
        values = {k: v for k, v in (values or {}).items() if v not in (None, "")}
        unknown = set(values) - {f.name for f in fields(cls)}
        errors = {k: "Filtro desconocido" for k in unknown}
        out = cls()
        for name, conv, msg in (("instance", int, "Escriba un número de instancia"),
                                ("version", int, "Escriba un número de versión"),
                                ("desde", _day, "Use una fecha AAAA-MM-DD"),
                                ("hasta", _day, "Use una fecha AAAA-MM-DD")):
            if name in values:
                try:
                    setattr(out, name, conv(values[name]))
                except (TypeError, ValueError):
                    errors[name] = msg
        for name in ("folio", "dependencia"):
            if name in values:
                setattr(out, name, str(values[name]).strip()[:300] or None)
        if "estado" in values:
            if values["estado"] not in STATUSES:
                errors["estado"] = "Use en_curso o completada"
            out.estado = values["estado"]
        if out.desde and out.hasta and out.desde > out.hasta:
            errors["hasta"] = "La fecha final es anterior a la inicial"
        if errors:
            raise InvalidData(errors, "Los filtros de búsqueda no son válidos")
        return out

    def as_args(self):
        return {f.name: (v.isoformat() if isinstance(v, date) else v)
                for f in fields(self) if (v := getattr(self, f.name)) is not None}


def _day(value):
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def local_midnight(day, zone=ZONA):
    """Naive UTC of the start of a local day (what the database stores)."""
    moment = datetime.combine(day, time.min, ZoneInfo(zone))
    return moment.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def conditions(f, zone=ZONA):
    i = instances.c
    conds = []
    if f.instance is not None:
        conds.append(i.id == f.instance)
    if f.folio:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", f.folio.lower()) + "%"
        conds.append(func.lower(i.folio).like(pattern, escape="\\"))
    if f.dependencia:
        conds.append(i.dependencia == f.dependencia)
    if f.desde:
        conds.append(i.started_at >= local_midnight(f.desde, zone))
    if f.hasta:
        conds.append(i.started_at < local_midnight(f.hasta + timedelta(days=1), zone))
    if f.estado:
        conds.append(i.status == f.estado)
    if f.version is not None:
        conds.append(process_versions.c.version == f.version)
    return conds


def search(conn, f, limit=25, offset=0, zone=ZONA):
    """A page of instances matching `f`, newest first, with their event count."""
    i = instances.c
    base = select(i.id).join(process_versions, process_versions.c.id == i.version_id).where(*conditions(f, zone))
    total = conn.execute(select(func.count()).select_from(base.subquery())).scalar()
    last_seq = select(func.max(events.c.seq)).where(events.c.instance_id == i.id).scalar_subquery()
    q = (select(i.id, i.process_id, i.status, i.dependencia, i.nombre_servicio, i.folio, i.started_by,
                i.started_at, i.completed_at, process_versions.c.version,
                ordenes_servicio.c.estado.label("orden_estado"), last_seq.label("eventos"))
         .join(process_versions, process_versions.c.id == i.version_id)
         .outerjoin(ordenes_servicio, ordenes_servicio.c.instance_id == i.id)
         .where(*conditions(f, zone)).order_by(i.started_at.desc(), i.id.desc()).limit(limit).offset(offset))
    return {"items": [_plain(dict(r)) for r in conn.execute(q).mappings()], "total": total,
            "limit": limit, "offset": offset}


def _rows(conn, f, zone):
    """Every event of the matching instances, in (instance, seq) order, streamed."""
    e, i = events.c, instances.c
    q = (select(e.instance_id, e.seq, e.type, e.process_id, e.element_id, e.element_name, e.task_id, e.username,
                e.data, e.created_at, e.hash, i.folio, i.dependencia, i.status, i.process_id.label("root"),
                process_versions.c.version)
         .join(instances, i.id == e.instance_id)
         .join(process_versions, process_versions.c.id == i.version_id)
         .where(*conditions(f, zone)).order_by(e.instance_id, e.seq))
    return conn.execute(q.execution_options(yield_per=BATCH)).mappings()


class _Roles:
    """org:role of an event: of the roles a task was offered to (its
    task_ready event), the first the user holds today; else the user's own
    role(s). Roles are today's: the history does not record role changes."""

    def __init__(self, conn):
        self.of_user = {}
        q = select(users.c.username, user_roles.c.role).join(user_roles, user_roles.c.user_id == users.c.id)
        for username, role in conn.execute(q.order_by(users.c.username, user_roles.c.role)):
            self.of_user.setdefault(username, []).append(role)
        self.offered = {}

    def new_trace(self):
        self.offered = {}

    def role(self, row):
        if row["type"] == "task_ready" and row["task_id"]:
            self.offered[row["task_id"]] = (row["data"] or {}).get("roles") or []
        if not row["username"]:
            return None
        held = self.of_user.get(row["username"], [])
        for role in self.offered.get(row["task_id"], ()):
            if role in held:
                return role
        return ",".join(held) or None


# -- XES ------------------------------------------------------------------------
XES_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <global scope="trace">
    <string key="concept:name" value="__INVALID__"/>
  </global>
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
    <date key="time:timestamp" value="1970-01-01T00:00:00.000+00:00"/>
    <string key="lifecycle:transition" value="complete"/>
  </global>
  <classifier name="Actividad" keys="concept:name lifecycle:transition"/>
  <string key="concept:name" value="Historial PSDT-05 / PSDT-07"/>
  <string key="lifecycle:model" value="standard"/>
"""


def xes(conn, f, zone=ZONA):
    roles = _Roles(conn)
    yield XES_HEAD
    current, buf = None, []
    for row in _rows(conn, f, zone):
        if row["instance_id"] != current:
            if current is not None:
                buf.append("  </trace>\n")
            current = row["instance_id"]
            roles.new_trace()
            buf.append("  <trace>\n" + "".join(
                "    " + _attr(kind, key, value) + "\n" for kind, key, value in (
                    ("string", "concept:name", row["folio"] or str(current)), ("int", "instancia", current),
                    ("string", "proceso", row["root"]), ("int", "version", row["version"]),
                    ("string", "dependencia", row["dependencia"]), ("string", "estado", row["status"]))
                if value is not None))
        buf.append(_xes_event(row, roles.role(row)))
        if len(buf) >= BATCH:
            yield "".join(buf)
            buf = []
    if current is not None:
        buf.append("  </trace>\n")
    buf.append("</log>\n")
    yield "".join(buf)


def _xes_event(row, role):
    attrs = [("string", "concept:name", row["element_name"] or row["element_id"] or row["type"]),
             ("date", "time:timestamp", _timestamp(row["created_at"])),
             ("string", "lifecycle:transition", LIFECYCLE.get(row["type"], "unknown")),
             ("string", "org:resource", row["username"]), ("string", "org:role", role),
             ("int", "seq", row["seq"]), ("string", "tipo", row["type"]),
             ("string", "proceso", row["process_id"]), ("string", "elemento", row["element_id"])]
    inner = "".join(f"      {_attr(kind, key, value)}\n" for kind, key, value in attrs if value is not None)
    return f"    <event>\n{inner}    </event>\n"


_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ENTITIES = {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def _attr(kind, key, value):
    text = _INVALID_XML.sub("", str(value))
    return f"<{kind} key={quoteattr(key)} value={quoteattr(text, _ENTITIES)}/>"


def _timestamp(moment):
    return moment.isoformat(timespec="milliseconds") + "+00:00"


# -- CSV ------------------------------------------------------------------------
CSV_COLUMNS = ["instancia", "folio", "proceso", "version", "dependencia", "estado_instancia", "seq", "fecha_utc",
               "tipo", "transicion", "proceso_elemento", "elemento_id", "elemento", "usuario", "rol", "datos", "hash"]


def csv_rows(conn, f, zone=ZONA):
    """The CSV as text chunks: UTF-8 with BOM (so spreadsheets read accents),
    one row per event, `datos` as compact JSON."""
    roles = _Roles(conn)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    current, count = None, 0
    for row in _rows(conn, f, zone):
        if row["instance_id"] != current:
            current = row["instance_id"]
            roles.new_trace()
        role = roles.role(row)
        writer.writerow([row["instance_id"], row["folio"] or "", row["root"], row["version"], row["dependencia"] or "",
                         row["status"], row["seq"], row["created_at"].isoformat(timespec="microseconds") + "Z",
                         row["type"], LIFECYCLE.get(row["type"], "unknown"), row["process_id"] or "",
                         row["element_id"] or "", row["element_name"] or "", row["username"] or "", role or "",
                         json.dumps(row["data"] or {}, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
                         row["hash"] or ""])
        count += 1
        if count % BATCH == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


FORMATS = {"xes": xes, "csv": csv_rows}
MEDIA = {"xes": ("application/xml", "xes"), "csv": ("text/csv; charset=utf-8", "csv")}


def _plain(d):
    return {k: (v.isoformat(timespec="seconds") + "Z" if isinstance(v, datetime) else v) for k, v in d.items()}
