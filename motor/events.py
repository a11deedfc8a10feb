"""The per-instance audit trail: append-only, numbered, hash-chained (see
motor/audit.py), written in the same transaction as the change it records."""
import json

from sqlalchemy import bindparam, select

from .audit import event_hash
from .db import events, instances, utcnow

# Built once: every engine step appends (construction costs more than running).
_LAST = (select(events.c.seq, events.c.hash).where(events.c.instance_id == bindparam("iid"))
         .order_by(events.c.seq.desc()).limit(1))
_INSERT = events.insert()
_LOCK = select(instances.c.id).where(instances.c.id == bindparam("iid")).with_for_update()


def append(conn, instance_id, new_events, now=None):
    """Append events (dicts with type, element_id, ... data) after the last one,
    each linked to the one before it by `prev_hash`.

    Appends to one instance are serialized so its chain never forks: on
    PostgreSQL we lock the instance row before reading the last hash (inside
    an engine step the row is already locked by the guarded UPDATE; claims,
    incidents and mail_sent append outside steps); SQLite writers already
    hold the database write lock (BEGIN IMMEDIATE). The (instance_id, seq)
    unique key is the backstop.

    Lock order: a transaction that appends outside an engine step should call
    `lock_chain` *before* it locks other rows of the instance (a user task,
    a job), as steps lock the instance row first; otherwise the two can
    deadlock on PostgreSQL.
    """
    if not new_events:
        return []
    now = now or utcnow()
    lock_chain(conn, instance_id)
    last = conn.execute(_LAST, {"iid": instance_id}).first()
    seq, prev = (last.seq, last.hash) if last is not None else (0, None)
    rows = []
    for ev in new_events:
        seq += 1
        row = {
            "instance_id": instance_id,
            "seq": seq,
            "type": ev["type"],
            "process_id": ev.get("process_id"),
            "element_id": ev.get("element_id"),
            "element_name": ev.get("element_name"),
            "task_id": ev.get("task_id"),
            "username": ev.get("username"),
            "data": _jsonable(ev.get("data") or {}),
            "created_at": now,
            "prev_hash": prev,
        }
        row["hash"] = prev = event_hash(row)
        rows.append(row)
    conn.execute(_INSERT, rows)
    return rows


def lock_chain(conn, instance_id):
    """Take the instance row lock that serializes appends (PostgreSQL only:
    SQLite transactions that write already exclude each other)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"iid": instance_id})


def history(conn, instance_id):
    rows = conn.execute(select(events).where(events.c.instance_id == instance_id).order_by(events.c.seq)).mappings()
    return [as_dict(r) for r in rows]


def as_dict(row):
    return {
        "seq": row["seq"], "type": row["type"], "process_id": row["process_id"],
        "element_id": row["element_id"], "element_name": row["element_name"],
        "task_id": row["task_id"], "user": row["username"], "data": row["data"],
        "at": row["created_at"].isoformat(timespec="seconds") + "Z",
    }


def _jsonable(data):
    # Round-trip through JSON so what we store is exactly what we read back.
    return json.loads(json.dumps(data, default=str, ensure_ascii=False))
