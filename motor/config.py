"""Engine configuration: built from the environment by callers, passed in."""
import os
from dataclasses import dataclass, field
from pathlib import Path

from .mail import SmtpSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"


@dataclass
class Config:
    database_url: str = f"sqlite:///{DEFAULT_INSTANCE_DIR / 'motor.db'}"
    database_schema: str | None = None  # PostgreSQL schema (isolated test runs)
    portal_url: str = "http://127.0.0.1:5000/portal"
    smtp: SmtpSettings | None = None
    # Constants visible to diagram expressions (e.g. the Annex 1 re-check wait).
    constants: dict = field(default_factory=lambda: {"ESPERA_REVERIFICACION": "PT10M"})
    http_timeout: float = 10.0
    max_attempts: int = 5
    retry_base_seconds: float = 10.0
    lock_seconds: float = 300.0
    worker_id: str = ""

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        cfg = cls()
        cfg.database_url = env.get("MOTOR_DATABASE_URL") or cfg.database_url
        cfg.database_schema = env.get("MOTOR_DATABASE_SCHEMA") or None
        cfg.portal_url = env.get("MOTOR_PORTAL_URL") or cfg.portal_url
        cfg.smtp = SmtpSettings.from_env(env)
        if env.get("MOTOR_ESPERA_REVERIFICACION"):
            cfg.constants["ESPERA_REVERIFICACION"] = env["MOTOR_ESPERA_REVERIFICACION"]
        for name, attr, conv in [
            ("MOTOR_HTTP_TIMEOUT", "http_timeout", float),
            ("MOTOR_MAX_ATTEMPTS", "max_attempts", int),
            ("MOTOR_RETRY_BASE_SECONDS", "retry_base_seconds", float),
            ("MOTOR_LOCK_SECONDS", "lock_seconds", float),
        ]:
            if env.get(name):
                setattr(cfg, attr, conv(env[name]))
        return cfg
