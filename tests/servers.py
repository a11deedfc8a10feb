"""Real loopback servers for tests: a configurable HTTP server and an SMTP sink.

Both run in threads of the test process and are context managers that always
shut down and join their threads, so no test leaves a listener behind.
"""
from __future__ import annotations

import email
import email.policy
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------- HTTP

@dataclass
class Route:
    """What the HTTP server answers for one path."""
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0             # seconds before answering (interrupted at shutdown)
    redirect: str | None = None    # Location header; status defaults to 302

    def payload(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


class _Server(ThreadingHTTPServer):
    daemon_threads = False   # joined by server_close(): nothing outlives the test
    block_on_close = True

    def __init__(self, routes: dict[str, Route], log: list | None):
        self.routes, self.log = routes, log
        self.stopping = threading.Event()
        super().__init__((LOOPBACK, 0), _Handler)

    def handle_error(self, request, client_address):
        pass  # clients that time out and hang up are expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self):
        if self.server.log is not None:
            self.server.log.append((self.command, self.path, dict(self.headers)))
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            route = Route(status=404, body="no existe")
        # Event.wait instead of sleep: shutdown wakes slow handlers at once.
        if route.delay and self.server.stopping.wait(route.delay):
            return
        self._answer(route)

    do_HEAD = do_GET

    def _answer(self, route: Route):
        body = route.payload()
        status = route.status if route.redirect is None or route.status != 200 else 302
        self.send_response(status)
        headers = {"Content-Type": "text/html; charset=utf-8", **route.headers}
        if route.redirect is not None:
            headers["Location"] = route.redirect
        headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # keep pytest output clean


@contextmanager
def http_server(routes: dict[str, Route | str | bytes], log: list | None = None):
    """Serve `routes` (path -> Route, or a body for a plain 200) on a free loopback port.

    Yields the base URL without trailing slash, e.g. "http://127.0.0.1:41234".
    If `log` is given, each request is appended as (method, path, headers).
    """
    table = {p: r if isinstance(r, Route) else Route(body=r) for p, r in routes.items()}
    server = _Server(table, log)
    # A short poll interval: shutdown() waits for the loop's next poll.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()  # joins the request threads
        thread.join()


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- SMTP

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


class Inbox(list):
    """Messages the SMTP sink accepted; `reject(...)` makes it refuse instead."""

    def __init__(self):
        super().__init__()
        self.reject_code: int | None = None
        self.reject_stage = "rcpt"

    def reject(self, code: int, stage: str = "rcpt") -> None:
        """Answer `code` at RCPT TO (or at DATA when stage="data")."""
        assert stage in ("rcpt", "data")
        self.reject_code, self.reject_stage = code, stage

    def _refusal(self, stage: str) -> str | None:
        if self.reject_code is None or stage != self.reject_stage:
            return None
        kind = "5.1.1 Mailbox unavailable" if self.reject_code >= 500 else "4.7.1 Try again later"
        return f"{self.reject_code} {kind}"


class _SinkHandler:
    def __init__(self, inbox: Inbox):
        self.inbox = inbox

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.inbox._refusal("rcpt")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refusal = self.inbox._refusal("data")
        if refusal:
            return refusal
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.inbox.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server():
    """Run an aiosmtpd sink on a free loopback port; yields (host, port, inbox)."""
    inbox = Inbox()
    controller = _start_controller(_SinkHandler(inbox))
    try:
        yield LOOPBACK, controller.port, inbox
    finally:
        controller.stop()


def _start_controller(handler, attempts: int = 5) -> Controller:
    # aiosmtpd needs a concrete port; another process may grab it in between.
    for attempt in range(attempts):
        controller = Controller(handler, hostname=LOOPBACK, port=closed_port(),
                                server_hostname="localhost", ready_timeout=5)
        try:
            controller.start()
            return controller
        except Exception:
            if attempt == attempts - 1:
                raise
