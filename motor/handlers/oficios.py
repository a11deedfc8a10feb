"""Sistema de Oficios: the Orden de servicio (opened 2.1, updated 4.1, closed 6.1)."""
from sqlalchemy import select

from ..db import folio_counters, instances, ordenes_servicio
from . import Handler
from .notificaciones import queue_mail


def _order(ctx):
    return ctx.conn.execute(select(ordenes_servicio).where(ordenes_servicio.c.instance_id == ctx.instance["id"])).mappings().first()


def _next_number(conn, year):
    # A row per year, bumped in place: PostgreSQL locks the row, SQLite holds
    # the write lock, so two orders never share a number.
    updated = conn.execute(folio_counters.update().where(folio_counters.c.anio == year)
                           .values(ultimo=folio_counters.c.ultimo + 1))
    if updated.rowcount == 0:
        conn.execute(folio_counters.insert().values(anio=year, ultimo=1))
        return 1
    return conn.execute(select(folio_counters.c.ultimo).where(folio_counters.c.anio == year)).scalar_one()


def abrir_orden(ctx):
    existing = _order(ctx)
    if existing is not None:  # idempotent: a retried step never opens a second order
        ctx.record(reutilizada=True)
        return {"folio": existing["folio"], "orden_estado": existing["estado"]}
    year = ctx.now.year
    number = _next_number(ctx.conn, year)
    folio = f"OS-{year}-{number:05d}"
    d = ctx.data
    ctx.conn.execute(ordenes_servicio.insert().values(
        folio=folio, anio=year, numero=number, instance_id=ctx.instance["id"],
        dependencia=d.get("dependencia", ""), nombre_servicio=d.get("nombre_servicio", ""),
        ubicacion=d.get("ubicacion", ""), estado="abierta", fecha_recepcion=ctx.instance["started_at"],
        observaciones=_note(None, "Registro", d.get("observaciones_mesa"))))
    ctx.conn.execute(instances.update().where(instances.c.id == ctx.instance["id"]).values(folio=folio))
    return {"folio": folio, "orden_estado": "abierta"}


def registrar_publicacion(ctx):
    order = _require_order(ctx)
    d = ctx.data
    ctx.conn.execute(ordenes_servicio.update().where(ordenes_servicio.c.id == order["id"]).values(
        estado="publicada", fecha_publicacion=ctx.now,
        nombre_servicio=d.get("nombre_portal") or order["nombre_servicio"],
        ubicacion=d.get("ubicacion_portal") or order["ubicacion"],
        observaciones=_note(order["observaciones"], "Publicación", d.get("observaciones_publicacion"))))
    queue_mail(ctx, "publicacion_registrada")
    return {"orden_estado": "publicada"}


def cerrar_orden(ctx):
    order = _require_order(ctx)
    ctx.conn.execute(ordenes_servicio.update().where(ordenes_servicio.c.id == order["id"]).values(
        estado="cerrada", fecha_cierre=ctx.now,
        observaciones=_note(order["observaciones"], "Cierre", ctx.data.get("observaciones_cierre"))))
    return {"orden_estado": "cerrada"}


def _require_order(ctx):
    order = _order(ctx)
    if order is None:
        raise LookupError("La instancia no tiene una orden de servicio abierta en el Sistema de Oficios")
    return order


def _note(existing, label, text):
    if not text:
        return existing
    line = f"[{label}] {text.strip()}"
    return f"{existing}\n{line}" if existing else line


HANDLERS = [
    Handler("oficios.abrir_orden", abrir_orden, description="Levanta la orden de servicio (2.1)"),
    Handler("oficios.registrar_publicacion", registrar_publicacion,
            description="Registra la publicación y notifica al Centro de Servicio (4.1)"),
    Handler("oficios.cerrar_orden", cerrar_orden, description="Cierra la orden de servicio (6.1)"),
]
