"""Service-task handlers, registered by topic.

A handler is `apply(ctx) -> dict`: it runs inside the transaction that
completes the service task, so whatever it writes to the database commits
together with the task (or not at all). Handlers that talk to the network do
it in `fetch(ctx)`, which runs before that transaction; its result reaches
`apply` as `ctx.observed`. The dict `apply` returns is merged into the
process data and recorded in the audit event, so a replay never calls out.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Handler:
    topic: str
    apply: Callable
    fetch: Optional[Callable] = None
    description: str = ""


@dataclass
class HandlerContext:
    conn: object            # the open transaction (None while fetching)
    config: object
    instance: dict          # the instances row as a mapping
    data: dict              # a copy of the task's data
    task_id: str
    element_id: str
    now: object
    observed: object = None
    http: object = None     # the worker's shared httpx.Client (for fetch)
    recorded: dict = field(default_factory=dict)

    def record(self, **details):
        """Add details to the audit event without putting them in process data."""
        self.recorded.update(details)


class Registry:
    def __init__(self, handlers=()):
        self._by_topic = {}
        for h in handlers:
            self.register(h)

    def register(self, handler):
        self._by_topic[handler.topic] = handler

    def get(self, topic):
        return self._by_topic.get(topic)

    def topics(self):
        return set(self._by_topic)

    def all(self):
        return sorted(self._by_topic.values(), key=lambda h: h.topic)


def default_registry():
    from . import monitoreo, notificaciones, oficios, portal
    return Registry([*oficios.HANDLERS, *portal.HANDLERS, *notificaciones.HANDLERS, *monitoreo.HANDLERS])
