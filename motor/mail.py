"""SMTP delivery of the workflow's notifications.

`send` either delivers or raises MailError, whose `permanent` flag tells the
outbox whether retrying can help. The Message-ID comes from the outbox row, so a
message re-sent after an ambiguous failure carries the same id and receivers can
recognise the duplicate.
"""
from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

_TRUE = {"1", "true", "yes", "si", "sí", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # settings get logged
    starttls: bool = False
    ssl: bool = False
    sender: str = "portal-ges@localhost"
    timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SmtpSettings | None:
        """Settings from MOTOR_SMTP_*; None (mail disabled) when no host is configured."""
        host = (environ.get("MOTOR_SMTP_HOST") or "").strip()
        if not host:
            return None
        use_ssl = _env_bool(environ, "MOTOR_SMTP_SSL")
        starttls = _env_bool(environ, "MOTOR_SMTP_STARTTLS")
        if use_ssl and starttls:
            raise ValueError("MOTOR_SMTP_SSL y MOTOR_SMTP_STARTTLS no pueden activarse a la vez")
        return cls(
            host=host,
            port=_env_number(environ, "MOTOR_SMTP_PORT", int, 465 if use_ssl else 25),
            username=environ.get("MOTOR_SMTP_USER") or None,
            password=environ.get("MOTOR_SMTP_PASSWORD") or None,
            starttls=starttls,
            ssl=use_ssl,
            sender=(environ.get("MOTOR_SMTP_FROM") or "").strip() or cls.sender,
            timeout=_env_number(environ, "MOTOR_SMTP_TIMEOUT", float, cls.timeout),
        )


def _env_bool(environ: Mapping[str, str], name: str) -> bool:
    value = (environ.get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} debe ser 1/true o 0/false, no {value!r}")


def _env_number(environ: Mapping[str, str], name: str, kind, default):
    value = (environ.get(name) or "").strip()
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name} no es un número válido: {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} debe ser mayor que cero: {value!r}")
    return number


class MailError(Exception):
    """Delivery failed. permanent=True: retrying the same message will not help."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code


def build_message(settings: SmtpSettings, *, to: list[str], subject: str, body: str,
                  message_id: str) -> EmailMessage:
    """A UTF-8 text/plain message; header values with line breaks are rejected."""
    if not to:
        raise ValueError("el mensaje no tiene destinatarios")
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = _message_id(message_id, settings.sender)
    # Tells vacation responders not to answer an automatic notification.
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the body 7-bit: no reliance on the server's 8BITMIME.
    msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    return msg


def _message_id(stable_id: str, sender: str) -> str:
    """Accept '<x@y>', 'x@y' or a bare row id; always the same output for the same id."""
    stable_id = stable_id.strip()
    if stable_id.startswith("<") and stable_id.endswith(">"):
        return stable_id
    if "@" in stable_id:
        return f"<{stable_id}>"
    domain = sender.rpartition("@")[2].strip("<> ") or "localhost"
    return f"<{stable_id}@{domain}>"


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver `message` or raise MailError; the connection is always closed."""
    smtp = None
    try:
        smtp = _connect(settings)
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise _classify(exc, settings) from exc
    finally:
        if smtp is not None:
            _close_quietly(smtp)
    if refused:  # some recipients accepted, others not
        raise _refused_error(refused)


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.ssl:
        return smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                context=ssl.create_default_context())
    return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)


def _close_quietly(smtp: smtplib.SMTP) -> None:
    # The message is already accepted (or the error already known): a failing
    # QUIT must not turn a delivery into an error and trigger a duplicate.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _classify(exc: BaseException, settings: SmtpSettings) -> MailError:
    server = f"{settings.host}:{settings.port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _refused_error(exc.recipients)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # A configuration problem, not the message's: keep it for a retry once fixed.
        return MailError(f"El servidor de correo {server} rechazó las credenciales "
                         f"({exc.smtp_code})", permanent=False, code=exc.smtp_code)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        return MailError(f"El servidor de correo {server} rechazó el mensaje: "
                         f"{code} {_text(exc.smtp_error)}", permanent=code >= 500, code=code)
    if isinstance(exc, TimeoutError):
        return MailError(f"Tiempo de espera agotado ({settings.timeout:g} s) con el servidor "
                         f"de correo {server}", permanent=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return MailError(f"El servidor de correo {server} cerró la conexión", permanent=False)
    if isinstance(exc, OSError):
        return MailError(f"No se pudo conectar con el servidor de correo {server}: "
                         f"{exc.strerror or exc}", permanent=False)
    return MailError(f"Error con el servidor de correo {server}: {exc}", permanent=False)


def _refused_error(refused: dict) -> MailError:
    """Permanent only when every refusal is a 5xx: a 4xx (e.g. greylisting) may pass later."""
    codes = [code for code, _text_ in refused.values()]
    detail = ", ".join(f"{rcpt} ({code} {_text(text)})" for rcpt, (code, text) in refused.items())
    return MailError(f"El servidor de correo rechazó a los destinatarios: {detail}",
                     permanent=all(code >= 500 for code in codes), code=max(codes))


def _text(raw) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
