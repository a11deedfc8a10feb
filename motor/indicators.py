"""The procedure's indicator (PSDT-05, section 9) and what a Director asks next.

Indicator, per quarter Q (local calendar quarters of the state's time zone):

    orders received in Q  = ordenes_servicio with fecha_recepcion in Q
    published             = those of them whose fecha_publicacion is set
                            (at the time of the query, whenever it happened)
    indicator             = published / received × 100   (none when received = 0)

fecha_publicacion is written by the Sistema de Oficios step 4.1
(`oficios.registrar_publicacion`), which the process reaches only after
PSDT-07 verified that the published link is visible and answers; a service
that is in the portal's catalog but failed that check is not yet counted.
Quarters are cohorts of received orders, so a late publication raises the
figure of the quarter in which its order was received.

Also per quarter: orders by status (of those received in Q); median days
from reception to publication and to closure (orders received in Q that
got there); rework loops (gateway_decision events at Gateway_5_2 sending
the request to Task_7_Informa, by the quarter the decision was taken); and
non-conformities recorded by PSDT-07 (no_conformidades by detectada_en).

Everything is computed with SQL aggregates over those tables, never by
loading workflow state. The quarter of a timestamp is a CASE over the
quarters' UTC bounds (bound parameters: the same SQL on SQLite and
PostgreSQL, and the time zone's offset changes are handled by zoneinfo).
Medians are computed in Python over the one-number-per-order result of a
single query (the dialects have no common median aggregate).
"""
import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from statistics import median
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, case, cast, extract, func, literal_column, select

from .db import events, instances, no_conformidades, ordenes_servicio

ZONA = "America/Mazatlan"
DIRECTOR_ROLES = {"director", "admin"}
ESTADOS = ("abierta", "publicada", "cerrada")
REWORK_GATEWAY, REWORK_TARGET = "Gateway_5_2", "Task_7_Informa"


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int
    start: datetime   # naive UTC, inclusive
    end: datetime     # naive UTC, exclusive

    @property
    def label(self):
        return f"{self.year}-T{self.number}"


def quarters(desde, hasta, zone=ZONA):
    """Every quarter from the one holding `desde` to the one holding `hasta`."""
    tz, utc = ZoneInfo(zone), ZoneInfo("UTC")

    def bound(year, month):
        return datetime(year, month, 1, tzinfo=tz).astimezone(utc).replace(tzinfo=None)

    out = []
    year, number = desde.year, (desde.month - 1) // 3 + 1
    while (year, number) <= (hasta.year, (hasta.month - 1) // 3 + 1):
        nxt = (year + 1, 1) if number == 4 else (year, number + 1)
        out.append(Quarter(year, number, bound(year, 3 * number - 2), bound(nxt[0], 3 * nxt[1] - 2)))
        year, number = nxt
    return out


def _bucket(column, qs):
    """The index in `qs` of the quarter holding `column` (SQL CASE)."""
    return case(*[(column < q.end, literal_column(str(i))) for i, q in enumerate(qs)], else_=None)


def _in_range(column, qs):
    return and_(column >= qs[0].start, column < qs[-1].end)


def _days(conn, later, earlier):
    if conn.dialect.name == "sqlite":
        return func.julianday(later) - func.julianday(earlier)
    return extract("epoch", later - earlier) / 86400.0


def compute(conn, desde, hasta, dependencia=None, zone=ZONA):
    qs = quarters(desde, hasta, zone)
    o, i, e, nc = ordenes_servicio.c, instances.c, events.c, no_conformidades.c
    cells = defaultdict(_empty)       # (dependencia, quarter index) -> counters
    durations = defaultdict(lambda: ([], []))

    # Orders received, by status, and how many of them were published.
    inner = (select(o.dependencia.label("dep"), _bucket(o.fecha_recepcion, qs).label("b"), o.estado,
                    case((o.fecha_publicacion.is_not(None), 1), else_=0).label("pub"))
             .where(_in_range(o.fecha_recepcion, qs), *([o.dependencia == dependencia] if dependencia else [])))
    inner = inner.subquery()
    for dep, b, estado, n, pub in conn.execute(
            select(inner.c.dep, inner.c.b, inner.c.estado, func.count(), func.sum(inner.c.pub))
            .group_by(inner.c.dep, inner.c.b, inner.c.estado)):
        cell = cells[(dep, b)]
        cell["recibidas"] += n
        cell["publicadas"] += int(pub or 0)
        cell["por_estado"][estado] = cell["por_estado"].get(estado, 0) + n

    # Days to publication and to closure: one number per order (medians below).
    for dep, b, pub_days, close_days in conn.execute(
            select(o.dependencia, _bucket(o.fecha_recepcion, qs), _days(conn, o.fecha_publicacion, o.fecha_recepcion),
                   _days(conn, o.fecha_cierre, o.fecha_recepcion))
            .where(_in_range(o.fecha_recepcion, qs), o.fecha_publicacion.is_not(None),
                   *([o.dependencia == dependencia] if dependencia else []))):
        durations[(dep, b)][0].append(float(pub_days))
        if close_days is not None:
            durations[(dep, b)][1].append(float(close_days))

    # Rework loops: "not satisfied" decisions at 5.2.
    rework = (select(i.dependencia.label("dep"), _bucket(e.created_at, qs).label("b"))
              .join(instances, i.id == e.instance_id)
              .where(e.type == "gateway_decision", e.element_id == REWORK_GATEWAY,
                     cast(e.data, String).like(f'%"{REWORK_TARGET}"%'), _in_range(e.created_at, qs),
                     *([i.dependencia == dependencia] if dependencia else []))).subquery()
    for dep, b, n in conn.execute(select(rework.c.dep, rework.c.b, func.count()).group_by(rework.c.dep, rework.c.b)):
        cells[(dep, b)]["reprocesos"] += n

    # Non-conformities found by PSDT-07 (Annex 1).
    found = (select(i.dependencia.label("dep"), _bucket(nc.detectada_en, qs).label("b"))
             .join(instances, i.id == nc.instance_id)
             .where(_in_range(nc.detectada_en, qs), *([i.dependencia == dependencia] if dependencia else []))).subquery()
    for dep, b, n in conn.execute(select(found.c.dep, found.c.b, func.count()).group_by(found.c.dep, found.c.b)):
        cells[(dep, b)]["no_conformidades"] += n

    deps = sorted({dep for dep, _ in cells} | {dep for dep, _ in durations}, key=lambda d: d or "")
    total_rows = [_row(q, [cells.get((d, b)) for d in deps], [durations.get((d, b)) for d in deps])
                  for b, q in enumerate(qs)]
    result = {
        "desde": desde.isoformat(), "hasta": hasta.isoformat(), "zona": zone,
        "dependencia": dependencia,
        "trimestres": total_rows,
        "total": _row(None, list(cells.values()), list(durations.values())),
        "por_dependencia": [],
    }
    for dep in deps:
        rows = [_row(q, [cells.get((dep, b))], [durations.get((dep, b))]) for b, q in enumerate(qs)]
        result["por_dependencia"].append({
            "dependencia": dep, "trimestres": rows,
            "total": _row(None, [cells.get((dep, b)) for b in range(len(qs))],
                          [durations.get((dep, b)) for b in range(len(qs))])})
    return result


def _empty():
    return {"recibidas": 0, "publicadas": 0, "por_estado": {}, "reprocesos": 0, "no_conformidades": 0}


def _row(q, cells, durations):
    cells = [c for c in cells if c]
    durations = [d for d in durations if d]
    received = sum(c["recibidas"] for c in cells)
    published = sum(c["publicadas"] for c in cells)
    pub_days = [x for d in durations for x in d[0]]
    close_days = [x for d in durations for x in d[1]]
    row = {
        "recibidas": received, "publicadas": published,
        "indicador": round(published * 100 / received, 1) if received else None,
        "por_estado": {s: sum(c["por_estado"].get(s, 0) for c in cells) for s in ESTADOS},
        "mediana_dias_publicacion": round(median(pub_days), 2) if pub_days else None,
        "mediana_dias_cierre": round(median(close_days), 2) if close_days else None,
        "reprocesos": sum(c["reprocesos"] for c in cells),
        "no_conformidades": sum(c["no_conformidades"] for c in cells),
    }
    if q is not None:
        row = {"anio": q.year, "trimestre": q.number, "etiqueta": q.label, **row}
    return row


CSV_COLUMNS = ["ambito", "anio", "trimestre", "recibidas", "publicadas", "indicador_pct", "abiertas",
               "publicadas_estado", "cerradas", "mediana_dias_publicacion", "mediana_dias_cierre", "reprocesos",
               "no_conformidades"]


def as_csv(result):
    """The figures as CSV text (UTF-8 BOM for spreadsheets): the totals per
    quarter first, then each dependencia's quarters."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    blocks = [("Total", result["trimestres"])] + [(d["dependencia"] or "(sin dependencia)", d["trimestres"])
                                                  for d in result["por_dependencia"]]
    for scope, rows in blocks:
        for r in rows:
            writer.writerow([scope, r["anio"], r["trimestre"], r["recibidas"], r["publicadas"],
                             _num(r["indicador"]), r["por_estado"]["abierta"], r["por_estado"]["publicada"],
                             r["por_estado"]["cerrada"], _num(r["mediana_dias_publicacion"]),
                             _num(r["mediana_dias_cierre"]), r["reprocesos"], r["no_conformidades"]])
    return out.getvalue()


def _num(value):
    return "" if value is None else value


def year_range(anio):
    return date(anio, 1, 1), date(anio, 12, 31)
