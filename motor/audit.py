"""Tamper-evident history: one hash chain per instance over the `events` table.

Every event row stores `prev_hash`, the `hash` of the event before it in the
same instance (None for seq 1), and its own `hash`: the SHA-256 (hex) of

    json.dumps({"instance_id", "seq", "type", "process_id", "element_id",
                "element_name", "task_id", "username", "data", "created_at",
                "prev_hash"}, sort_keys=True, separators=(",", ":"),
               ensure_ascii=False).encode("utf-8")

with `created_at` as naive UTC ISO 8601 with microseconds
("2026-03-31T23:59:59.000000"). Anyone can recompute it with any language.

What the chain proves: changing, deleting or inserting an event in the
middle breaks the chain at that point. What it cannot prove by itself:
that nobody rewrote the whole tail of a chain (or cut it short) with a
consistent set of hashes. For that an auditor keeps the heads (`motor audit
head --json`) outside the database and checks against them later (`motor
audit verify --head FILE`).
"""
import hashlib
import json
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select

from .db import events, utcnow
from .errors import MotorError

AUDIT_ROLES = {"auditor", "admin"}
FIELDS = ("instance_id", "seq", "type", "process_id", "element_id", "element_name", "task_id", "username", "data",
          "created_at", "prev_hash")
MAX_FINDINGS = 100


def canonical(row):
    """The bytes an event's hash covers (row: a mapping with FIELDS)."""
    content = {k: row[k] for k in FIELDS}
    content["created_at"] = row["created_at"].isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(row):
    return hashlib.sha256(canonical(row)).hexdigest()


# -- verification -------------------------------------------------------------
@dataclass
class Finding:
    """The first event of one instance that does not match (Spanish text)."""
    instance_id: int
    seq: int
    kind: str   # contenido | enlace | secuencia | sin_hash | cabeza
    message: str

    def __str__(self):
        return f"instancia {self.instance_id}, evento {self.seq}: {self.message}"


@dataclass
class Report:
    ok: bool = True
    instances: int = 0
    events: int = 0
    findings: list = field(default_factory=list)

    def as_dict(self):
        return {"ok": self.ok, "instances": self.instances, "events": self.events,
                "findings": [asdict(f) for f in self.findings]}


_COLUMNS = [events.c[name] for name in ("instance_id", "seq", "type", "process_id", "element_id", "element_name",
                                        "task_id", "username", "data", "created_at", "prev_hash", "hash")]


def verify(conn, instance_id=None, heads=None, batch=1000):
    """Recompute every chain (or one), streaming the events in (instance, seq)
    order. Reports the first mismatch of each instance (up to MAX_FINDINGS).

    `heads` ({instance_id: (seq, hash)}, from `load_heads`) adds the check
    that each chain still reaches the recorded head with the same hash, so a
    tail that was cut off or rewritten is detected too.
    """
    report = Report()
    heads = dict(heads or {})
    if instance_id is not None:
        heads = {k: v for k, v in heads.items() if k == instance_id}
    q = select(*_COLUMNS).order_by(events.c.instance_id, events.c.seq)
    if instance_id is not None:
        q = q.where(events.c.instance_id == instance_id)
    chain = None
    for row in conn.execute(q.execution_options(yield_per=batch)).mappings():
        report.events += 1
        if chain is None or row["instance_id"] != chain.instance_id:
            if chain is not None:
                _close(chain, heads, report)
            chain = _Chain(row["instance_id"])
            report.instances += 1
        if chain.finding is None:
            chain.check(row, heads.get(row["instance_id"]))
    if chain is not None:
        _close(chain, heads, report)
    for iid in sorted(heads):  # heads of instances that have no events left at all
        _add(report, Finding(iid, 1, "secuencia", "faltan todos los eventos de la instancia: falta la secuencia 1 "
                                                  f"(la cabeza guardada llega a la {heads[iid][0]})"))
    report.findings.sort(key=lambda f: (f.instance_id, f.seq))
    report.ok = not report.findings
    return report


class _Chain:
    def __init__(self, instance_id):
        self.instance_id, self.last_seq, self.last_hash, self.finding = instance_id, 0, None, None

    def check(self, row, head):
        seq, expected = row["seq"], self.last_seq + 1
        if seq != expected:
            return self._fail(expected, "secuencia", f"falta la secuencia {expected} (el siguiente evento guardado "
                                                     f"es el {seq}): se borró al menos un evento")
        if row["hash"] is None:
            return self._fail(seq, "sin_hash", "el evento no tiene hash: se insertó sin pasar por el motor")
        if event_hash(row) != row["hash"]:
            return self._fail(seq, "contenido", "el hash del contenido no coincide: el evento se modificó "
                                                "(datos, usuario, fecha, tipo o elemento)")
        if row["prev_hash"] != self.last_hash:
            return self._fail(seq, "enlace", f"enlace roto: su prev_hash no es el hash del evento {seq - 1}; "
                                             f"se modificó el evento {seq - 1} o este")
        if head is not None and seq == head[0] and row["hash"] != head[1]:
            return self._fail(seq, "cabeza", "el hash no coincide con la cabeza guardada por el auditor: "
                                             "la cadena se reescribió desde este evento o antes")
        self.last_seq, self.last_hash = seq, row["hash"]

    def _fail(self, seq, kind, message):
        self.finding = Finding(self.instance_id, seq, kind, message)


def _close(chain, heads, report):
    head = heads.pop(chain.instance_id, None)
    if chain.finding is None and head is not None and chain.last_seq < head[0]:
        chain.finding = Finding(chain.instance_id, chain.last_seq + 1, "secuencia",
                                f"faltan eventos al final: falta la secuencia {chain.last_seq + 1} "
                                f"(la cabeza guardada llega a la {head[0]})")
    if chain.finding is not None:
        _add(report, chain.finding)


def _add(report, finding):
    if len(report.findings) < MAX_FINDINGS:
        report.findings.append(finding)


# -- heads --------------------------------------------------------------------
def heads(conn, instance_id=None):
    """The last event (seq, hash) of each chain, plus one digest over them all
    that an auditor can note down alone."""
    last = select(events.c.instance_id, func.max(events.c.seq).label("seq")).group_by(events.c.instance_id)
    if instance_id is not None:
        last = last.where(events.c.instance_id == instance_id)
    last = last.subquery()
    q = (select(events.c.instance_id, events.c.seq, events.c.hash)
         .join(last, (events.c.instance_id == last.c.instance_id) & (events.c.seq == last.c.seq))
         .order_by(events.c.instance_id))
    found = {str(r.instance_id): {"seq": r.seq, "hash": r.hash} for r in conn.execute(q)}
    digest = hashlib.sha256(json.dumps(found, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {"generated_at": utcnow().isoformat(timespec="seconds") + "Z", "digest": digest, "instances": found}


def parse_heads(document):
    """{instance_id: (seq, hash)} from what `heads()` produced (as parsed JSON)."""
    try:
        items = document["instances"].items()
        return {int(iid): (int(h["seq"]), str(h["hash"])) for iid, h in items}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MotorError(f"El archivo de cabezas no tiene el formato de «motor audit head --json» ({exc})") from None
