"""The per-instance audit trail: append-only, numbered, written in the same
transaction as the change it records."""
import json

from sqlalchemy import func, select

from .db import events, utcnow


def append(conn, instance_id, new_events, now=None):
    """Append events (dicts with type, element_id, ... data) after the last one.

    The caller's transaction also updated the instance row under its
    optimistic lock, so two steps never append to one instance at once; the
    (instance_id, seq) unique key is the backstop.
    """
    if not new_events:
        return []
    now = now or utcnow()
    last = conn.execute(select(func.max(events.c.seq)).where(events.c.instance_id == instance_id)).scalar() or 0
    rows = []
    for offset, ev in enumerate(new_events, start=1):
        rows.append({
            "instance_id": instance_id,
            "seq": last + offset,
            "type": ev["type"],
            "process_id": ev.get("process_id"),
            "element_id": ev.get("element_id"),
            "element_name": ev.get("element_name"),
            "task_id": ev.get("task_id"),
            "username": ev.get("username"),
            "data": _jsonable(ev.get("data") or {}),
            "created_at": now,
        })
    conn.execute(events.insert(), rows)
    return rows


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
