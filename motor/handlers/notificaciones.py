"""Notifications (2.2, 4.1, 4.2, 7.1): mails written to the outbox in the same
transaction as the step; `motor work` delivers them over SMTP."""
from string import Formatter

from sqlalchemy import bindparam, select

from ..db import outbox
from ..users import emails_for
from . import Handler

# recipients: roles; "solicitante" means the dependencia's own users.
TEMPLATES = {
    "orden_canalizada": {
        "to": ["gobierno_electronico"],
        "subject": "Orden de servicio {folio}: integrar «{nombre_servicio}» al Portal",
        "body": ("La Mesa de Ayuda para Dependencias canalizó la orden de servicio {folio}.\n\n"
                 "Dependencia: {dependencia}\nServicio: {nombre_servicio}\nUbicación: {ubicacion}\n"
                 "Observaciones: {observaciones_mesa}\n\n"
                 "Ingrese al sistema para realizar la publicación en el Portal de GES."),
    },
    "publicacion_registrada": {
        "to": ["mesa_ayuda"],
        "subject": "Orden de servicio {folio}: servicio integrado al Portal",
        "body": ("Gobierno Electrónico integró el servicio «{nombre_portal}» al Portal de GES.\n\n"
                 "Dependencia: {dependencia}\nUbicación publicada: {ubicacion_portal}\n\n"
                 "Confirme con el usuario la solución del servicio."),
    },
    "observaciones": {
        "to": ["solicitante", "mesa_ayuda"],
        "subject": "Orden de servicio {folio}: observaciones de la publicación",
        "body": ("El servicio «{nombre_portal}» ya está publicado en el Portal de GES: {ubicacion_portal}\n\n"
                 "Observaciones pertinentes:\n{observaciones_publicacion}\n\n"
                 "Pruebe el servicio y confirme si la solución fue satisfactoria."),
    },
    "no_satisfaccion": {
        "to": ["gobierno_electronico"],
        "subject": "Orden de servicio {folio}: el servicio no fue satisfactorio",
        "body": ("La dependencia {dependencia} informó que el servicio «{nombre_portal}» no fue satisfactorio.\n\n"
                 "Causas:\n{causas_no_satisfaccion}\n\n"
                 "Verifique y corrija las anomalías (actividad 8)."),
    },
}


_BY_KEY = select(outbox.c.id).where(outbox.c.dedupe_key == bindparam("key"))
_INSERT = outbox.insert()


class _Blank(dict):
    def __missing__(self, key):
        return "—"


def render(template, data):
    values = _Blank({k: v for k, v in data.items() if v not in (None, "")})
    fmt = Formatter()
    return fmt.vformat(template["subject"], (), values), fmt.vformat(template["body"], (), values)


def recipients(conn, template, dependencia):
    found = set()
    for role in template["to"]:
        found.update(emails_for(conn, role, dependencia if role == "solicitante" else None))
    return sorted(found)


def queue_mail(ctx, name):
    """Write one mail to the outbox; a retried step finds it by its key."""
    key = f"{ctx.task_id}:{name}"
    existing = ctx.conn.execute(_BY_KEY, {"key": key}).first()
    if existing is not None:
        ctx.record(correo=existing.id)
        return existing.id
    template = TEMPLATES[name]
    subject, body = render(template, ctx.data)
    to = recipients(ctx.conn, template, ctx.instance["dependencia"])
    new_id = ctx.conn.execute(_INSERT, dict(
        instance_id=ctx.instance["id"], dedupe_key=key, message_id=f"<{ctx.task_id}.{name}@psdt05.motor>",
        to_addrs=", ".join(to), subject=subject, body=body,
        status="pendiente" if to else "sin_destinatarios", attempts=0,
        next_attempt_at=ctx.now, created_at=ctx.now)).inserted_primary_key[0]
    ctx.record(correo=new_id, destinatarios=to)
    return new_id


def _notifier(name):
    def apply(ctx):
        queue_mail(ctx, name)
        return {}
    return apply


HANDLERS = [
    Handler("notificacion.orden_canalizada", _notifier("orden_canalizada"),
            description="Notifica a Gobierno Electrónico la orden canalizada (2.2)"),
    Handler("notificacion.observaciones", _notifier("observaciones"),
            description="Envía las observaciones de la publicación (4.2)"),
    Handler("notificacion.no_satisfaccion", _notifier("no_satisfaccion"),
            description="Informa las causas de la no satisfacción (7.1)"),
]
