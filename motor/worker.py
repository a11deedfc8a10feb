"""`motor work`: runs due service tasks (external-task pattern), fires timers,
and delivers the outbox over SMTP.

A job whose handler only touches the database is taken, run and completed
in one transaction. A job with a network part (monitoring checks) is claimed
with a lease (locked_by / locked_until) in its own short transaction, so two
workers never run it at once; the network part runs outside any transaction;
then one transaction records the result, completes the task and advances the
instance. If the worker dies mid-handler the lease expires and the job is
taken again; since nothing was committed, nothing is done twice.
"""
import logging
import os
import socket
import threading
import traceback
from datetime import timedelta
from uuid import UUID, uuid4

from sqlalchemy import bindparam, or_, select

from . import events
from .db import instances, jobs, outbox, utcnow
from .errors import Conflict
from .handlers import HandlerContext
from .instances import RUNNING
from .checks import make_client
from .mail import MailError, build_message, send

log = logging.getLogger("motor.worker")

# Polled and hot statements, built once (construction costs more than running them).
_UNLOCKED = or_(jobs.c.locked_until.is_(None), jobs.c.locked_until < bindparam("now"))
_DUE_JOBS = (select(jobs.c.id, jobs.c.topic).where(jobs.c.status == "pendiente", jobs.c.due_at <= bindparam("now"), _UNLOCKED)
             .order_by(jobs.c.due_at).limit(bindparam("limit")))
_TAKE_JOB = (jobs.update().where(jobs.c.id == bindparam("job_id"), jobs.c.status == "pendiente",
                                 jobs.c.due_at <= bindparam("now"), _UNLOCKED)
             .values(locked_by=bindparam("locked_by"), locked_until=bindparam("locked_until"), attempts=jobs.c.attempts + 1))
_GET_JOB = select(jobs).where(jobs.c.id == bindparam("job_id"))
_DUE_TIMERS = select(instances.c.id).where(instances.c.status == RUNNING, instances.c.next_timer_at <= bindparam("now"))
_DUE_MAIL = (select(outbox.c.id).where(outbox.c.status == "pendiente", outbox.c.next_attempt_at <= bindparam("now"),
                                       or_(outbox.c.locked_until.is_(None), outbox.c.locked_until < bindparam("now")))
             .order_by(outbox.c.id).limit(bindparam("limit")))


class Worker:
    def __init__(self, engine, worker_id=None):
        self.engine = engine
        self.config = engine.config
        self.db = engine.db
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"
        # One HTTP client per worker: building one (TLS context) costs ~25 ms.
        self.http = make_client(self.config.http_timeout)

    # -- loop ---------------------------------------------------------------
    def run_once(self, max_rounds=1000):
        """Work until nothing is due; returns how many items were processed."""
        total = 0
        for _ in range(max_rounds):
            jobs_due, timers_due, mail_due = self._due()
            done = self.run_jobs(jobs_due) + self.fire_timers(timers_due) + self.deliver_mail(mail_due)
            total += done
            if done == 0:
                break
        return total

    def run_forever(self, poll_seconds=1.0, stop=None):
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if self.run_once() == 0:
                    stop.wait(poll_seconds)
            except Exception:  # keep serving; the item itself records its failure
                log.exception("error en el ciclo de trabajo")
                stop.wait(poll_seconds)

    # -- service tasks ------------------------------------------------------
    def _due(self, limit=50):
        """What is due now, read in one snapshot: (job id, topic) pairs,
        instances with a timer due, and mails to send (when SMTP is set)."""
        params = {"now": utcnow(), "limit": limit}
        with self.db.read() as conn:
            return (conn.execute(_DUE_JOBS, params).all(), list(conn.execute(_DUE_TIMERS, params).scalars()),
                    list(conn.execute(_DUE_MAIL, params).scalars()) if self.config.smtp else [])

    def run_jobs(self, due=None):
        due = self._due()[0] if due is None else due
        return sum(1 for job_id, topic in due if self.run_job(job_id, topic))

    def run_job(self, job_id, topic=None):
        handler = self.engine.handlers.get(topic) if topic else None
        if handler is not None and handler.fetch is None:
            return self._run_inline(job_id, handler)
        return self._run_leased(job_id)

    def _run_inline(self, job_id, handler):
        """A handler that only touches the database runs claim, apply and
        completion in one transaction: a crash rolls all of it back, so it
        needs no lease and can never be half done."""
        try:
            with self.db.transaction() as conn:
                job = self._take(conn, job_id)
                if job is None:
                    return False
                loaded = self.engine.runner.load(conn, job["instance_id"])
                ctx = self._context(job, loaded, conn)
                self._complete(conn, loaded, job, ctx, handler)
        except Exception as exc:  # rolled back, attempt counter included
            self._fail(job_id, exc, counted=False)
        return True

    def _run_leased(self, job_id):
        """A handler with a network part: lease the job, fetch outside any
        transaction, then complete it in one transaction if still ours."""
        with self.db.transaction() as conn:
            job = self._take(conn, job_id)
            if job is None:
                return False
            loaded = self.engine.runner.load(conn, job["instance_id"])
            ctx = self._context(job, loaded, None)
            self.engine.runner.release(loaded)
        try:
            handler = self.engine.handlers.get(job["topic"])
            if handler is None:
                raise LookupError(f"No hay un manejador registrado para el tópico {job['topic']}")
            if handler.fetch is not None:
                ctx.observed = handler.fetch(ctx)
            with self.db.transaction() as conn:
                ours = conn.execute(select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.locked_by == self.id)).first()
                if ours is None:
                    raise Conflict("El arrendamiento de la tarea de servicio expiró y otro trabajador la tomó")
                loaded = self.engine.runner.load(conn, job["instance_id"])
                ctx.conn, ctx.instance = conn, loaded.row
                self._complete(conn, loaded, job, ctx, handler)
        except Exception as exc:  # any handler failure: retry with backoff, then incident
            self._fail(job_id, exc, counted=True)
        return True

    def _take(self, conn, job_id):
        now = utcnow()
        taken = conn.execute(_TAKE_JOB, {"job_id": job_id, "now": now, "locked_by": self.id,
                                         "locked_until": now + timedelta(seconds=self.config.lock_seconds)})
        if taken.rowcount != 1:
            return None
        return dict(conn.execute(_GET_JOB, {"job_id": job_id}).mappings().one())

    def _context(self, job, loaded, conn):
        data = dict(loaded.workflow.get_task_from_id(UUID(job["id"])).data)
        return HandlerContext(conn=conn, config=self.config, instance=loaded.row, data=data, task_id=job["id"],
                              element_id=job["element_id"], now=utcnow(), http=self.http)

    def _complete(self, conn, loaded, job, ctx, handler):
        ctx.now = utcnow()
        result = handler.apply(ctx) or {}

        def action(wf):
            task = wf.get_task_from_id(UUID(job["id"]))
            task.data.update(result)
            task.run()
            return [{"type": "service_task_executed", "process_id": job["process_id"],
                     "element_id": job["element_id"], "element_name": job["name"], "task_id": job["id"],
                     "username": None, "data": {"topic": job["topic"], "attempt": job["attempts"],
                                                "result": result, "details": ctx.recorded}}]

        self.engine.runner.step(conn, loaded, action, now=ctx.now)

    def _fail(self, job_id, exc, counted):
        """Record a failed attempt: back off, or open an incident after the last.
        `counted`: the attempt was already counted by a committed lease."""
        now = utcnow()
        message = f"{type(exc).__name__}: {exc}"
        with self.db.transaction() as conn:
            job = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if job is None or (counted and job["locked_by"] != self.id):
                return  # done meanwhile, or our lease was lost to another worker
            attempts = job["attempts"] if counted else job["attempts"] + 1
            log.warning("tarea de servicio %s (%s) falló en el intento %s: %s", job_id, job["topic"], attempts, message)
            final = attempts >= self.config.max_attempts
            delay = self.config.retry_base_seconds * (2 ** (attempts - 1))
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                status="incidente" if final else "pendiente", locked_by=None, locked_until=None, attempts=attempts,
                last_error=message[:4000], due_at=now if final else now + timedelta(seconds=delay)))
            if final:
                events.append(conn, job["instance_id"], [{
                    "type": "incident", "process_id": job["process_id"], "element_id": job["element_id"],
                    "element_name": job["name"], "task_id": job_id,
                    "data": {"topic": job["topic"], "attempts": attempts, "error": message[:4000],
                             "trace": traceback.format_exception_only(exc)[-1].strip()[:1000]}}], now)

    # -- timers -------------------------------------------------------------
    def fire_timers(self, ids=None):
        now = utcnow()
        ids = self._due()[1] if ids is None else ids
        fired = 0
        for iid in ids:
            try:
                with self.db.transaction() as conn:
                    loaded = self.engine.runner.load(conn, iid)
                    if loaded.row["next_timer_at"] is None or loaded.row["next_timer_at"] > now:
                        continue

                    def action(wf):
                        wf.refresh_timers()
                        return []

                    self.engine.runner.step(conn, loaded, action)
                    fired += 1
            except Conflict:
                continue  # someone else advanced it; its next due time is current
        return fired

    # -- mail ---------------------------------------------------------------
    def deliver_mail(self, ids=None):
        settings = self.config.smtp
        if settings is None:
            return 0  # mails wait in the outbox until SMTP is configured
        ids = self._due()[2] if ids is None else ids
        return sum(1 for mid in ids if self._deliver(settings, mid))

    def _deliver(self, settings, mail_id):
        now = utcnow()
        with self.db.transaction() as conn:
            taken = conn.execute(outbox.update().where(
                outbox.c.id == mail_id, outbox.c.status == "pendiente",
                or_(outbox.c.locked_until.is_(None), outbox.c.locked_until < now)).values(
                locked_until=now + timedelta(seconds=self.config.lock_seconds), attempts=outbox.c.attempts + 1))
            if taken.rowcount != 1:
                return False
            mail = dict(conn.execute(select(outbox).where(outbox.c.id == mail_id)).mappings().one())
        to = [a.strip() for a in mail["to_addrs"].split(",") if a.strip()]
        try:
            send(settings, build_message(settings, to=to, subject=mail["subject"], body=mail["body"],
                                         message_id=mail["message_id"]))
        except MailError as exc:
            self._mail_failed(mail, exc)
            return True
        with self.db.transaction() as conn:
            conn.execute(outbox.update().where(outbox.c.id == mail_id).values(
                status="enviado", sent_at=utcnow(), locked_until=None, last_error=None))
            if mail["instance_id"]:
                events.append(conn, mail["instance_id"], [{"type": "mail_sent", "data": {
                    "outbox_id": mail_id, "to": to, "subject": mail["subject"]}}])
        return True

    def _mail_failed(self, mail, exc):
        final = exc.permanent or mail["attempts"] >= self.config.max_attempts
        delay = self.config.retry_base_seconds * (2 ** (mail["attempts"] - 1))
        with self.db.transaction() as conn:
            conn.execute(outbox.update().where(outbox.c.id == mail["id"]).values(
                status="fallido" if final else "pendiente", locked_until=None, last_error=str(exc)[:4000],
                next_attempt_at=utcnow() + timedelta(seconds=delay)))


