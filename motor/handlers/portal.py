"""Publication in the portal (3.2), through a small adapter interface.

The built-in adapter is the system's own public catalog, shown at /portal.
Another portal would implement `publish(conn, entry) -> dict` the same way.
"""
from sqlalchemy import select

from ..db import portal_catalog
from . import Handler


class CatalogAdapter:
    """Writes into the portal_catalog table (one entry per instance)."""

    def publish(self, conn, instance_id, dependencia, nombre, ubicacion, now):
        existing = conn.execute(select(portal_catalog.c.id).where(portal_catalog.c.instance_id == instance_id)).first()
        values = {"dependencia": dependencia, "nombre": nombre, "ubicacion": ubicacion, "actualizado_en": now}
        if existing is None:
            conn.execute(portal_catalog.insert().values(instance_id=instance_id, publicado_en=now, **values))
            return {"accion": "alta"}
        conn.execute(portal_catalog.update().where(portal_catalog.c.id == existing.id).values(**values))
        return {"accion": "actualizacion"}


def publicar(ctx, adapter=CatalogAdapter()):
    d = ctx.data
    nombre, ubicacion = d.get("nombre_portal"), d.get("ubicacion_portal")
    if not nombre or not ubicacion:
        raise ValueError("Faltan el nombre o la ubicación que se publicarán en el Portal")
    outcome = adapter.publish(ctx.conn, ctx.instance["id"], ctx.instance["dependencia"] or "", nombre, ubicacion, ctx.now)
    ctx.record(**outcome, nombre=nombre, ubicacion=ubicacion)
    return {"publicado_en": ctx.now.isoformat(timespec="seconds") + "Z"}


HANDLERS = [Handler("portal.publicar", publicar, description="Publica el servicio en el Portal de GES (3.2)")]
