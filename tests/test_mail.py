"""SMTP delivery against a real aiosmtpd server on loopback."""
import threading

import pytest

from motor.mail import MailError, SmtpSettings, build_message, send
from servers import closed_port, smtp_server

SUBJECT = "Publicación del servicio «Licencia de Conducir» en el Portal"
BODY = "Estimada Dirección de Gobierno Digital:\n\nEl trámite ya está visible. ¡Gracias!\n"
TO = ["enlace@ges.gob.mx", "direccion.digital@ges.gob.mx"]


@pytest.fixture(autouse=True)
def no_threads_left_behind():
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leftover, f"threads still running: {leftover}"


def message(settings, message_id="outbox-42"):
    return build_message(settings, to=TO, subject=SUBJECT, body=BODY, message_id=message_id)


def test_spanish_message_reaches_the_server_intact():
    with smtp_server() as (host, port, inbox):
        settings = SmtpSettings(host=host, port=port, sender="portal-ges@ges.gob.mx")
        send(settings, message(settings, "<outbox-42@ges.gob.mx>"))
    [received] = inbox
    assert received.mail_from == "portal-ges@ges.gob.mx"
    assert received.rcpt_tos == TO
    got = received.message
    assert got["Subject"] == SUBJECT
    assert got["Message-ID"] == "<outbox-42@ges.gob.mx>"
    assert got["Date"] is not None
    assert got.get_content_type() == "text/plain"
    assert got.get_content_charset() == "utf-8"
    assert got["Content-Transfer-Encoding"] == "quoted-printable"  # 7-bit safe on the wire
    assert got.get_content().replace("\r\n", "\n") == BODY  # SMTP carries CRLF


def test_bare_outbox_id_becomes_a_stable_message_id():
    settings = SmtpSettings(host="localhost", sender="portal-ges@ges.gob.mx")
    first, again = message(settings, "outbox-7"), message(settings, "outbox-7")
    assert first["Message-ID"] == again["Message-ID"] == "<outbox-7@ges.gob.mx>"


def test_header_injection_is_rejected():
    settings = SmtpSettings(host="localhost")
    with pytest.raises(ValueError):
        build_message(settings, to=TO, subject="Hola\r\nBcc: x@y.mx", body="", message_id="1")


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_server_answering_550_is_a_permanent_error(stage):
    with smtp_server() as (host, port, inbox):
        inbox.reject(550, stage)
        settings = SmtpSettings(host=host, port=port)
        with pytest.raises(MailError) as caught:
            send(settings, message(settings))
    assert caught.value.permanent is True
    assert caught.value.code == 550
    assert "rechazó" in caught.value.message
    assert inbox == []


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_server_answering_451_is_a_temporary_error(stage):
    with smtp_server() as (host, port, inbox):
        inbox.reject(451, stage)
        settings = SmtpSettings(host=host, port=port)
        with pytest.raises(MailError) as caught:
            send(settings, message(settings))
    assert caught.value.permanent is False
    assert caught.value.code == 451


def test_closed_port_is_a_temporary_error():
    settings = SmtpSettings(host="127.0.0.1", port=closed_port(), timeout=2)
    with pytest.raises(MailError) as caught:
        send(settings, message(settings))
    assert caught.value.permanent is False
    assert "No se pudo conectar" in caught.value.message


def test_from_env_without_host_disables_mail():
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({"MOTOR_SMTP_HOST": "  "}) is None


def test_from_env_reads_every_setting():
    settings = SmtpSettings.from_env({
        "MOTOR_SMTP_HOST": "smtp.ges.gob.mx", "MOTOR_SMTP_PORT": "587",
        "MOTOR_SMTP_USER": "motor", "MOTOR_SMTP_PASSWORD": "s3creto",
        "MOTOR_SMTP_STARTTLS": "true", "MOTOR_SMTP_FROM": "portal@ges.gob.mx",
        "MOTOR_SMTP_TIMEOUT": "5.5",
    })
    assert settings == SmtpSettings(host="smtp.ges.gob.mx", port=587, username="motor",
                                    password="s3creto", starttls=True, ssl=False,
                                    sender="portal@ges.gob.mx", timeout=5.5)
    assert "s3creto" not in repr(settings)


def test_from_env_defaults():
    settings = SmtpSettings.from_env({"MOTOR_SMTP_HOST": "localhost"})
    assert settings == SmtpSettings(host="localhost")
    assert SmtpSettings.from_env({"MOTOR_SMTP_HOST": "h", "MOTOR_SMTP_SSL": "1"}).port == 465


@pytest.mark.parametrize("env", [
    {"MOTOR_SMTP_PORT": "veinticinco"},
    {"MOTOR_SMTP_STARTTLS": "quizá"},
    {"MOTOR_SMTP_SSL": "1", "MOTOR_SMTP_STARTTLS": "1"},
])
def test_from_env_rejects_bad_values(env):
    with pytest.raises(ValueError):
        SmtpSettings.from_env({"MOTOR_SMTP_HOST": "localhost", **env})
