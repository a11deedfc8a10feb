"""The analysts' view of deployed versions and of drafts edited in the browser.

Queries only: the engine checks roles and owns the transaction.
"""
from lxml import etree
from sqlalchemy import case, delete, func, select

from . import diff
from .db import instances, jobs, process_drafts, process_versions, user_tasks, utcnow
from .definitions import content_hash
from .errors import InvalidData, NotFound
from .instances import COMPLETED, RUNNING
from .xmlparse import XmlError, parse_xml

v, i = process_versions.c, instances.c


def _counts(conn, process_id=None):
    """version_id -> (running, finished)."""
    q = (select(i.version_id, func.sum(case((i.status == RUNNING, 1), else_=0)),
                func.sum(case((i.status == COMPLETED, 1), else_=0)))
         .group_by(i.version_id))
    if process_id:
        q = q.where(i.process_id == process_id)
    return {vid: (int(run or 0), int(done or 0)) for vid, run, done in conn.execute(q)}


def history(conn, process_id):
    """Every version of a process, newest first, with its instance counts."""
    rows = conn.execute(select(v.id, v.process_id, v.name, v.version, v.content_hash, v.file_name,
                               v.deployed_at, v.deployed_by)
                        .where(v.process_id == process_id).order_by(v.version.desc())).mappings().all()
    if not rows:
        raise NotFound(f"El proceso {process_id} no está desplegado")
    counts = _counts(conn, process_id)
    return [{"id": r["id"], "process_id": r["process_id"], "name": r["name"], "version": r["version"],
             "hash": r["content_hash"], "file": r["file_name"], "deployed_at": r["deployed_at"],
             "deployed_by": r["deployed_by"], "running": counts.get(r["id"], (0, 0))[0],
             "finished": counts.get(r["id"], (0, 0))[1]} for r in rows]


def processes(conn):
    """One line per deployed process: latest version, totals and draft."""
    counts = _counts(conn)
    latest, totals = {}, {}
    for r in conn.execute(select(v.id, v.process_id, v.name, v.version, v.deployed_at, v.deployed_by, v.file_name)
                          .order_by(v.process_id, v.version)).mappings():
        latest[r["process_id"]] = dict(r)
        run, done = counts.get(r["id"], (0, 0))
        t = totals.setdefault(r["process_id"], {"versions": 0, "running": 0, "finished": 0})
        t["versions"] += 1
        t["running"] += run
        t["finished"] += done
    drafts = {d["process_id"]: dict(d) for d in conn.execute(
        select(process_drafts.c.process_id, process_drafts.c.base_version, process_drafts.c.saved_by,
               process_drafts.c.saved_at)).mappings()}
    return [{"process_id": pid, "name": row["name"], "latest": row["version"], "file": row["file_name"],
             "deployed_at": row["deployed_at"], "deployed_by": row["deployed_by"], **totals[pid],
             "draft": drafts.get(pid)} for pid, row in sorted(latest.items())]


def version_row(conn, process_id, version=None):
    """One version with its XML (the latest when `version` is None)."""
    q = select(process_versions).where(v.process_id == process_id)
    q = q.where(v.version == int(version)) if version is not None else q.order_by(v.version.desc()).limit(1)
    row = conn.execute(q).mappings().first()
    if row is None:
        what = f"la versión {version} del proceso {process_id}" if version is not None else f"el proceso {process_id}"
        raise NotFound(f"No existe {what}")
    return dict(row)


def compare(conn, process_id, from_version, to_version):
    a, b = version_row(conn, process_id, from_version), version_row(conn, process_id, to_version)
    result = diff.diff_xml(a["xml"], b["xml"], process_id)
    meta = lambda r: {"version": r["version"], "hash": r["content_hash"], "deployed_at": r["deployed_at"],  # noqa: E731
                      "deployed_by": r["deployed_by"], "name": r["name"]}
    return {"process_id": process_id, "from": meta(a), "to": meta(b), **result}


# -- drafts ---------------------------------------------------------------------
def get_draft(conn, process_id):
    row = conn.execute(select(process_drafts).where(process_drafts.c.process_id == process_id)).mappings().first()
    return dict(row) if row is not None else None


def save_draft(conn, process_id, xml, username):
    """Store (or replace) the process's draft; it must be safe, well-formed XML."""
    if not isinstance(xml, str) or not xml.strip():
        raise InvalidData({"xml": "El borrador está vacío"})
    try:
        parse_xml(xml.encode("utf-8"))
    except XmlError as exc:
        raise InvalidData({"xml": f"El borrador no es XML válido (línea {exc.line}): {exc.message}"}) from None
    base = version_row(conn, process_id)["version"]
    current = get_draft(conn, process_id)
    values = {"xml": xml, "saved_by": username, "saved_at": utcnow()}
    if current is None:
        conn.execute(process_drafts.insert().values(process_id=process_id, base_version=base, **values))
    else:
        conn.execute(process_drafts.update().where(process_drafts.c.process_id == process_id).values(**values))
    return get_draft(conn, process_id)


def delete_draft(conn, process_id):
    conn.execute(delete(process_drafts).where(process_drafts.c.process_id == process_id))


def running(conn, process_id):
    """Running instances of a process with their version and where they wait
    (pending user tasks and service tasks), oldest first: migration candidates."""
    rows = conn.execute(select(i.id, i.folio, i.nombre_servicio, i.dependencia, i.started_at, v.version)
                        .join(process_versions, v.id == i.version_id)
                        .where(i.process_id == process_id, i.status == RUNNING)
                        .order_by(i.started_at, i.id)).mappings().all()
    waiting = {r["id"]: [] for r in rows}
    if waiting:
        for table in (user_tasks, jobs):
            for iid, name in conn.execute(select(table.c.instance_id, table.c.name)
                                          .where(table.c.instance_id.in_(list(waiting)))):
                waiting[iid].append(name)
    return [{**dict(r), "waiting": sorted(waiting[r["id"]])} for r in rows]


def deploy_preview(conn, checked_files):
    """Per process of each validated file: the version it would become and
    what changes against the one in service (nothing is stored)."""
    out = []
    for checked in checked_files:
        xml = etree.tostring(checked.tree, encoding="unicode")
        digest = content_hash(xml)
        for process in checked.processes:
            pid = process.get("id")
            latest = conn.execute(select(process_versions).where(v.process_id == pid)
                                  .order_by(v.version.desc()).limit(1)).mappings().first()
            same = conn.execute(select(v.version).where(v.process_id == pid, v.content_hash == digest)).scalar()
            item = {"file": checked.name, "process_id": pid, "name": process.get("name"), "hash": digest,
                    "latest": latest["version"] if latest else None, "unchanged_as": same}
            item["diff"] = diff.diff_xml(latest["xml"], xml, pid) if latest is not None and same is None else None
            out.append(item)
    return out
