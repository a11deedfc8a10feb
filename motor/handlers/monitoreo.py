"""PSDT-07 monitoring: real HTTP checks, and the Annex 1 record of a
"Servicio no visible en el portal" non-conformity."""
from sqlalchemy import select

from ..checks import check_portal, check_service
from ..db import monitoring_checks, no_conformidades
from . import Handler

NO_CONFORME = "Servicio no visible en el portal"


def _save_check(ctx, kind, result):
    ctx.conn.execute(monitoring_checks.insert().values(
        instance_id=ctx.instance["id"], kind=kind, url=result.url, ok=result.ok,
        status_code=result.status_code, elapsed_ms=result.elapsed_ms, reason=result.reason,
        checked_at=ctx.now))
    ctx.record(**result.as_dict())


def fetch_portal(ctx):
    return check_portal(ctx.config.portal_url, ctx.data.get("nombre_portal", ""),
                        ctx.data.get("ubicacion_portal", ""), timeout=ctx.config.http_timeout, client=ctx.http)


def verificar_portal(ctx):
    _save_check(ctx, "portal", ctx.observed)
    return {"portal_visible": ctx.observed.ok, "portal_motivo": ctx.observed.reason}


def fetch_service(ctx):
    return check_service(ctx.data.get("ubicacion_portal", ""), timeout=ctx.config.http_timeout, client=ctx.http)


def verificar_servicio(ctx):
    r = ctx.observed
    _save_check(ctx, "servicio", r)
    return {"servicio_responde": r.ok, "servicio_motivo": r.reason, "servicio_status": r.status_code}


def registrar_no_conformidad(ctx):
    d = ctx.data
    reasons = [d.get(k) for k, ok in (("portal_motivo", d.get("portal_visible")),
                                      ("servicio_motivo", d.get("servicio_responde"))) if not ok]
    new_id = ctx.conn.execute(no_conformidades.insert().values(
        instance_id=ctx.instance["id"], folio=d.get("folio"), tipo=NO_CONFORME,
        motivo=" ".join(r for r in reasons if r) or "La verificación no fue satisfactoria",
        detectada_en=ctx.now)).inserted_primary_key[0]
    return {"no_conformidad_id": new_id}


def registrar_resultado(ctx):
    d = ctx.data
    open_ids = list(ctx.conn.execute(select(no_conformidades.c.id).where(
        no_conformidades.c.instance_id == ctx.instance["id"], no_conformidades.c.resuelta_en.is_(None))).scalars())
    if open_ids:
        ctx.conn.execute(no_conformidades.update().where(no_conformidades.c.id.in_(open_ids)).values(
            causa=d.get("causa_no_conformidad"), accion_correctiva=d.get("accion_correctiva"), resuelta_en=ctx.now))
    ctx.record(no_conformidades_resueltas=open_ids)
    return {"monitoreo_resultado": "verificado", "monitoreo_verificado_en": ctx.now.isoformat(timespec="seconds") + "Z"}


HANDLERS = [
    Handler("monitoreo.verificar_portal", verificar_portal, fetch_portal,
            "Verifica que el enlace sea visible en el Portal (PSDT-07)"),
    Handler("monitoreo.verificar_servicio", verificar_servicio, fetch_service,
            "Verifica que la ubicación del servicio responda (PSDT-07)"),
    Handler("monitoreo.registrar_no_conformidad", registrar_no_conformidad,
            description="Registra el servicio no conforme (Anexo 1)"),
    Handler("monitoreo.registrar_resultado", registrar_resultado,
            description="Registra el resultado del monitoreo y cierra las no conformidades"),
]
