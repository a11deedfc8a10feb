"""Test helpers: a portal server rendering the engine's catalog over real HTTP,
and a Driver that works tasks as each role would (checking a save/restore
round trip of the instance after every step)."""
import html
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from motor.engine import SYSTEM


class _PortalHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        state = self.server.state
        path = self.path.split("?")[0]
        state.requests.append(path)
        if state.delay:
            time.sleep(state.delay)
        if path == "/portal":
            body = state.render().encode("utf-8")
            status = state.portal_status
        elif path.startswith("/servicios/"):
            status = state.services.get(path[len("/servicios/"):], 404)
            body = f"servicio {path} ({status})".encode()
        else:
            status, body = 404, b"no existe"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class PortalState:
    def __init__(self, base):
        self.base = base
        self.portal_url = base + "/portal"
        self.engine = None
        self.portal_status = 200
        self.services = {"citas": 200}
        self.hidden = False  # render links hidden (a "no visible" portal)
        self.delay = 0       # seconds before answering (a hanging portal)
        self.requests = []

    def service_url(self, name):
        return f"{self.base}/servicios/{name}"

    def render(self):
        items = []
        for e in (self.engine.portal_entries() if self.engine else []):
            style = ' style="display:none"' if self.hidden else ""
            items.append(f'<li{style}><a href="{html.escape(e["ubicacion"])}">{html.escape(e["nombre"])}</a></li>')
        return f"<html><body><h1>Portal de GES</h1><ul>{''.join(items)}</ul></body></html>"


@contextmanager
def portal_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PortalHandler)
    server.daemon_threads = True
    server.state = PortalState(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Driver:
    """Works an instance through the engine's service API, as its users would."""

    def __init__(self, engine, portal):
        self.engine, self.portal = engine, portal

    def user(self, name):
        return self.engine.user(name)

    def start(self, username="sol", **data):
        data.setdefault("nombre_servicio", "Citas médicas en línea")
        data.setdefault("ubicacion", self.portal.service_url("citas"))
        iid = self.engine.start(self.user(username), "PSDT05", data)
        self.roundtrip(iid)
        return iid

    def task(self, iid, username, element_id):
        tasks = [t for t in self.engine.tasks(self.user(username), instance_id=iid) if t["element_id"] == element_id]
        assert tasks, f"{username} has no {element_id} in instance {iid}: {self.pending(iid)}"
        return tasks[0]

    def complete(self, iid, username, element_id, **data):
        task = self.task(iid, username, element_id)
        self.engine.complete(self.user(username), task["id"], data)
        self.roundtrip(iid)
        return task

    def work(self, iid=None):
        count = self.engine.worker("test-worker").run_once()
        if iid is not None:
            self.roundtrip(iid)
        return count

    def pending(self, iid):
        return sorted(t["element_id"] for t in self.engine.tasks(SYSTEM, instance_id=iid))

    def show(self, iid):
        return self.engine.show(SYSTEM, iid)

    def history(self, iid):
        return self.engine.history(SYSTEM, iid)

    def roundtrip(self, iid):
        """Save/restore: the stored state restores and serializes identically."""
        runner = self.engine.runner
        with self.engine.db.read() as conn:
            loaded = runner.load(conn, iid)
        text = runner.serializer.dumps(loaded.workflow)
        assert text == loaded.row["state"], "restored workflow serializes differently"
        with self.engine.db.read() as conn:
            again = runner.serializer.loads(text, runner.specs.get(conn, loaded.row["version_id"], loaded.row["called_versions"]), runner.script_engine)
        assert runner.serializer.dumps(again) == text
        assert again.script_engine is runner.script_engine

    # -- whole stretches of the procedure --------------------------------
    def through_publication(self, iid, nombre="Citas médicas en línea", ubicacion=None):
        """Activities 2 to 4 with a passing PSDT-07 check."""
        self.complete(iid, "mesa", "Task_2_Registra", observaciones_mesa="Solicitud recibida")
        self.work(iid)
        self.publish(iid, nombre_portal=nombre, ubicacion_portal=ubicacion or self.portal.service_url("citas"),
                     observaciones_publicacion="Publicado en la sección Salud")

    def publish(self, iid, observaciones_publicacion=None, **form):
        """Activities 3 (with the PSDT-07 check) and 4; `form` fills task 3."""
        self.complete(iid, "ge", "Task_3_Publica", **form)
        self.work(iid)
        notes = {} if observaciones_publicacion is None else {"observaciones_publicacion": observaciones_publicacion}
        self.complete(iid, "ge", "Task_4_Notifica", **notes)
        self.work(iid)

    def close_satisfied(self, iid, who="sol", observaciones_cierre=None, **confirmation):
        """Activities 5 (satisfied) and 6: the order is closed."""
        self.complete(iid, who, "Task_5_1_Confirma", satisfecho=True, **confirmation)
        notes = {} if observaciones_cierre is None else {"observaciones_cierre": observaciones_cierre}
        self.complete(iid, "mesa", "Task_6_Documenta", **notes)
        self.work(iid)
