"""Schema and the one place that owns a database transaction.

Every engine step and every request runs inside `Database.transaction()`:
begin, work, commit, or roll back everything. SQLite writers take the write
lock up front (BEGIN IMMEDIATE) so two steps never interleave; PostgreSQL
relies on the optimistic `lock_version` check on `instances`.
"""
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (JSON, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData,
                        String, Table, Text, UniqueConstraint, create_engine, event)
from sqlalchemy.engine import make_url

metadata = MetaData()
SCHEMA_VERSION = 1


def utcnow():
    """Naive UTC: the same on SQLite and PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


schema_info = Table("schema_info", metadata, Column("version", Integer, primary_key=True))

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(80), nullable=False, unique=True),
    Column("password_hash", String(255)),
    Column("nombre", String(200)),
    Column("email", String(254)),
    Column("dependencia", String(150)),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False, default=utcnow),
)

user_roles = Table(
    "user_roles", metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(40), primary_key=True),
)

process_versions = Table(
    "process_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("process_id", String(100), nullable=False),
    Column("name", String(300)),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("file_name", String(300), nullable=False),
    Column("xml", Text, nullable=False),
    Column("deployed_at", DateTime, nullable=False, default=utcnow),
    Column("deployed_by", String(80)),
    UniqueConstraint("process_id", "version"),
    UniqueConstraint("process_id", "content_hash"),
)

instances = Table(
    "instances", metadata,
    Column("id", Integer, primary_key=True),
    Column("process_id", String(100), nullable=False),
    Column("version_id", ForeignKey("process_versions.id"), nullable=False),
    # process id -> process_versions.id of every called process, fixed at start
    Column("called_versions", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # en_curso | completada
    Column("dependencia", String(150)),
    Column("nombre_servicio", String(300)),
    Column("folio", String(20)),
    Column("started_by", String(80)),
    Column("started_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("completed_at", DateTime),
    Column("state", Text, nullable=False),
    Column("lock_version", Integer, nullable=False, default=1),
    Column("next_timer_at", DateTime),
    Index("ix_instances_timer", "next_timer_at"),
    Index("ix_instances_dependencia", "dependencia", "status"),
)

user_tasks = Table(
    "user_tasks", metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", ForeignKey("instances.id"), nullable=False),
    Column("process_id", String(100), nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("name", String(300)),
    Column("lane", String(300)),
    Column("roles", String(300), nullable=False),
    Column("dependencia", String(150)),
    Column("created_at", DateTime, nullable=False),
    Column("claimed_by", String(80)),
    Column("claimed_at", DateTime),
    Column("form", JSON, nullable=False),
    Index("ix_user_tasks_instance", "instance_id"),
    # The web work queue (Engine.queue): "tomadas por mí" and the admin's view, oldest first.
    Index("ix_user_tasks_claimed", "claimed_by", "created_at", "id"),
    Index("ix_user_tasks_created", "created_at", "id"),
)

user_task_roles = Table(
    "user_task_roles", metadata,
    Column("task_id", ForeignKey("user_tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(40), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Index("ix_user_task_roles_role", "role", "created_at"),
)

jobs = Table(  # external (service) tasks waiting for `motor work`
    "jobs", metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", ForeignKey("instances.id"), nullable=False),
    Column("process_id", String(100), nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("name", String(300)),
    Column("topic", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # pendiente | incidente
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", DateTime, nullable=False),
    Column("locked_by", String(100)),
    Column("locked_until", DateTime),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Index("ix_jobs_due", "status", "due_at"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_id", ForeignKey("instances.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(40), nullable=False),
    Column("process_id", String(100)),
    Column("element_id", String(200)),
    Column("element_name", String(300)),
    Column("task_id", String(36)),
    Column("username", String(80)),
    Column("data", JSON),
    Column("created_at", DateTime, nullable=False),
    # Room for the tamper-evident chain (filled by the audit work).
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    UniqueConstraint("instance_id", "seq"),
)

ordenes_servicio = Table(
    "ordenes_servicio", metadata,
    Column("id", Integer, primary_key=True),
    Column("folio", String(20), nullable=False, unique=True),
    Column("anio", Integer, nullable=False),
    Column("numero", Integer, nullable=False),
    Column("instance_id", ForeignKey("instances.id"), nullable=False, unique=True),
    Column("dependencia", String(150), nullable=False),
    Column("nombre_servicio", String(300), nullable=False),
    Column("ubicacion", String(500), nullable=False),
    Column("estado", String(20), nullable=False),  # abierta | publicada | cerrada
    Column("fecha_recepcion", DateTime, nullable=False),
    Column("fecha_publicacion", DateTime),
    Column("fecha_cierre", DateTime),
    Column("observaciones", Text),
    UniqueConstraint("anio", "numero"),
)

folio_counters = Table(
    "folio_counters", metadata,
    Column("anio", Integer, primary_key=True),
    Column("ultimo", Integer, nullable=False),
)

portal_catalog = Table(
    "portal_catalog", metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_id", ForeignKey("instances.id"), nullable=False, unique=True),
    Column("dependencia", String(150), nullable=False),
    Column("nombre", String(300), nullable=False),
    Column("ubicacion", String(500), nullable=False),
    Column("publicado_en", DateTime, nullable=False),
    Column("actualizado_en", DateTime, nullable=False),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_id", ForeignKey("instances.id")),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("message_id", String(200), nullable=False),
    Column("to_addrs", Text, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(20), nullable=False),  # pendiente | enviado | fallido | sin_destinatarios
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("locked_until", DateTime),
    Column("sent_at", DateTime),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

monitoring_checks = Table(
    "monitoring_checks", metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_id", ForeignKey("instances.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # portal | servicio
    Column("url", String(500), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status_code", Integer),
    Column("elapsed_ms", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("checked_at", DateTime, nullable=False),
)

no_conformidades = Table(  # Annex 1: "Servicio no visible en el portal"
    "no_conformidades", metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_id", ForeignKey("instances.id"), nullable=False),
    Column("folio", String(20)),
    Column("tipo", String(200), nullable=False),
    Column("motivo", Text, nullable=False),
    Column("detectada_en", DateTime, nullable=False),
    Column("causa", Text),
    Column("accion_correctiva", Text),
    Column("resuelta_en", DateTime),
)


process_drafts = Table(  # one work-in-progress diagram per process, edited in the browser modeler
    "process_drafts", metadata,
    Column("process_id", String(100), primary_key=True),
    Column("base_version", Integer),  # the version the analyst started from
    Column("xml", Text, nullable=False),
    Column("saved_by", String(80), nullable=False),
    Column("saved_at", DateTime, nullable=False),
)


def _sqlite_setup(engine):
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        readonly = conn.get_execution_options().get("motor_readonly")
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class Database:
    """Owns the SQLAlchemy engine; `schema` isolates test runs on PostgreSQL."""

    def __init__(self, url, schema=None, echo=False):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"echo": echo, "future": True}
        if not self.is_sqlite:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _sqlite_setup(engine)
        if schema:
            engine = engine.execution_options(schema_translate_map={None: schema})
        self.engine = engine
        self.schema = schema

    def create_schema(self):
        """Create or upgrade the schema; safe to run any number of times."""
        with self.transaction() as conn:
            if self.schema:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            metadata.create_all(conn)
            for table in metadata.sorted_tables:  # indexes added after a table was created
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            if conn.execute(schema_info.select()).first() is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))

    @contextmanager
    def transaction(self):
        """One unit of work: commit on success, roll back on any exception.
        Callbacks registered with `after_commit` run only once it committed."""
        callbacks = []
        with self.engine.begin() as conn:
            conn.info["motor_after_commit"] = callbacks
            try:
                yield conn
            finally:
                conn.info.pop("motor_after_commit", None)
        for callback in callbacks:
            callback()

    @staticmethod
    def after_commit(conn, callback):
        conn.info["motor_after_commit"].append(callback)

    @contextmanager
    def read(self):
        """A read-only snapshot that never takes the SQLite write lock."""
        with self.engine.connect().execution_options(motor_readonly=True) as conn:
            with conn.begin():
                yield conn

    def dispose(self):
        self.engine.dispose()
