"""Process definition versions: deploy, look up, and parse (cached)."""
import hashlib
from collections import OrderedDict
from threading import Lock

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .bpmn import BPMN_NS, ProcessSource, parse_sources
from .db import process_versions, utcnow
from .errors import Conflict, NotFound


def content_hash(xml_text):
    return hashlib.sha256(xml_text.encode("utf-8")).hexdigest()


def deploy_checked(conn, checked_files, username):
    """Store each process of each (already validated) file as a new version,
    unless its content is unchanged. Returns one dict per process."""
    results = []
    for checked in checked_files:
        xml_text = _xml_text(checked)
        digest = content_hash(xml_text)
        for process in checked.processes:
            results.append(_store(conn, process.get("id"), process.get("name"), checked.name, xml_text, digest, username))
    return results


def _xml_text(checked):
    from lxml import etree
    return etree.tostring(checked.tree, encoding="unicode")


def _store(conn, process_id, name, file_name, xml_text, digest, username):
    same = conn.execute(select(process_versions).where(
        process_versions.c.process_id == process_id, process_versions.c.content_hash == digest)).mappings().first()
    if same is not None:
        return _summary(same, created=False)
    version = (conn.execute(select(func.max(process_versions.c.version))
                            .where(process_versions.c.process_id == process_id)).scalar() or 0) + 1
    values = dict(process_id=process_id, name=name, version=version, content_hash=digest,
                  file_name=file_name, xml=xml_text, deployed_at=utcnow(), deployed_by=username)
    try:
        with conn.begin_nested():
            new_id = conn.execute(process_versions.insert().values(**values)).inserted_primary_key[0]
    except IntegrityError:
        # A concurrent deploy won the race: of the same content, use its row;
        # of other content, it took our version number.
        same = conn.execute(select(process_versions).where(
            process_versions.c.process_id == process_id, process_versions.c.content_hash == digest)).mappings().first()
        if same is None:
            raise Conflict(f"Otro despliegue del proceso {process_id} terminó al mismo tiempo y tomó la versión "
                           f"{version}; vuelva a desplegar") from None
        return _summary(same, created=False)
    return _summary({**values, "id": new_id}, created=True)


def _summary(row, created):
    return {"process_id": row["process_id"], "version": row["version"], "hash": row["content_hash"],
            "id": row["id"], "file": row["file_name"], "created": created}


def latest(conn, process_id):
    row = conn.execute(select(process_versions).where(process_versions.c.process_id == process_id)
                       .order_by(process_versions.c.version.desc()).limit(1)).mappings().first()
    if row is None:
        raise NotFound(f"El proceso {process_id} no está desplegado")
    return row


def deployed_ids(conn):
    return set(conn.execute(select(process_versions.c.process_id).distinct()).scalars())


def called_ids(xml_text):
    """Process ids named by call activities (cheap scan, no full parse)."""
    from .xmlparse import parse_xml
    tree = parse_xml(xml_text.encode("utf-8"))
    return sorted({n.get("calledElement") for n in tree.getroot().iter(f"{{{BPMN_NS}}}callActivity")
                   if n.get("calledElement")})


def resolve_called(conn, version_row):
    """Pin the latest version of every process reachable by call activities."""
    pinned, pending = {}, called_ids(version_row["xml"])
    while pending:
        pid = pending.pop()
        if pid in pinned or pid == version_row["process_id"]:
            continue
        row = latest(conn, pid)
        pinned[pid] = row["id"]
        pending.extend(called_ids(row["xml"]))
    return pinned


class SpecCache:
    """Parsed Definitions keyed by the exact versions an instance runs on."""

    def __init__(self, size=32):
        self._items, self._size, self._lock = OrderedDict(), size, Lock()

    def get(self, conn, version_id, called_versions):
        key = (version_id, tuple(sorted((called_versions or {}).items())))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        definition = self._load(conn, version_id, called_versions or {})
        with self._lock:
            self._items[key] = definition
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return definition

    @staticmethod
    def _load(conn, version_id, called_versions):
        ids = [version_id, *called_versions.values()]
        rows = {r["id"]: r for r in conn.execute(select(process_versions).where(process_versions.c.id.in_(ids))).mappings()}
        if version_id not in rows:
            raise NotFound(f"No existe la versión de proceso {version_id}")
        main = rows[version_id]
        sources = [ProcessSource(r["process_id"], r["file_name"], r["xml"]) for r in rows.values()]
        return parse_sources(sources, main["process_id"])
