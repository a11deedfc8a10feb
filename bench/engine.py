"""Engine overhead: a full PSDT-05 instance through `motor` (start, every
completion, every service task, persisted in SQLite, real HTTP checks on
loopback) against raw SpiffWorkflow running the same diagrams in memory with a
save/restore around each user task. Also the bytes stored per completed
instance, events included. Prints `engine_overhead_ratio: X` last.

"Raw SpiffWorkflow" saves with SpiffWorkflow's own serializer (specs embedded,
as a plain user of the library would); a second raw figure saves with motor's
spec-less state format, to show how much of the gap is persistence format.

    .venv/bin/python bench/engine.py [--runs 25]
"""
import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.bpmn.serializer.helpers.spec import TaskSpecConverter  # noqa: E402
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402
from sqlalchemy import select  # noqa: E402

from motor.bpmn import ExternalTask, MotorParser, StateSerializer  # noqa: E402
from motor.config import Config  # noqa: E402
from motor.db import events, instances  # noqa: E402
from motor.engine import SYSTEM, Engine  # noqa: E402
from motor.expressions import script_engine  # noqa: E402
from motor.xmlparse import parse_xml  # noqa: E402

FILES = sorted((ROOT / "procesos").glob("*.bpmn"))

# The user inputs of each path, in order: (element id, data).
HAPPY = [("Task_2_Registra", {}), ("Task_3_Publica", {}), ("Task_4_Notifica", {"observaciones_publicacion": "ok"}),
         ("Task_5_1_Confirma", {"satisfecho": True}), ("Task_6_Documenta", {"observaciones_cierre": "ok"})]
REWORK = HAPPY[:3] + [("Task_5_1_Confirma", {"satisfecho": False, "comentarios_usuario": "no abre"}),
                      ("Task_7_Informa", {"causas_no_satisfaccion": "no abre"}),
                      ("Task_8_Corrige", {"correccion_realizada": "liga corregida"})] + HAPPY[1:]
USERS = {"Task_2_Registra": "mesa", "Task_3_Publica": "ge", "Task_4_Notifica": "ge", "Task_5_1_Confirma": "mesa",
         "Task_6_Documenta": "mesa", "Task_7_Informa": "mesa", "Task_8_Corrige": "ge"}


class Portal(BaseHTTPRequestHandler):
    engine = None

    def do_GET(self):
        if self.path.startswith("/portal"):
            links = "".join(f'<a href="{e["ubicacion"]}">{e["nombre"]}</a>' for e in self.engine.portal_entries())
            body = f"<html><body>{links}</body></html>".encode()
        else:
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def run_motor(engine, worker, base, path):
    start = time.perf_counter()
    mesa = engine.user("mesa")
    data = {"nombre_servicio": "Citas médicas", "ubicacion": f"{base}/servicio"}
    iid = engine.start(engine.user("sol"), "PSDT05", data)
    for element, form in path:
        user = engine.user(USERS[element]) if element != "Task_5_1_Confirma" else mesa
        [task] = [t for t in engine.tasks(user, instance_id=iid) if t["element_id"] == element]
        engine.complete(user, task["id"], form)
        worker.run_once()
    elapsed = time.perf_counter() - start
    assert engine.show(SYSTEM, iid)["status"] == "completada"
    return elapsed, iid


# Handler results the raw run feeds in, so both runs take the same branches.
RESULTS = {"oficios.abrir_orden": {"folio": "OS-2026-00001", "orden_estado": "abierta"},
           "portal.publicar": {"publicado_en": "2026-01-01T00:00:00Z"},
           "monitoreo.verificar_portal": {"portal_visible": True, "portal_motivo": "ok"},
           "monitoreo.verificar_servicio": {"servicio_responde": True, "servicio_motivo": "ok", "servicio_status": 200}}


class ExternalTaskConverter(TaskSpecConverter):
    """What a plain SpiffWorkflow user must add to persist our service tasks."""

    def to_dict(self, spec):
        return {**self.get_default_attributes(spec), "topic": spec.topic, "external_type": spec.external_type}

    def from_dict(self, dct):
        return self.task_spec_from_dict(dct)


class StockSerializer:
    """SpiffWorkflow's own JSON serializer, specs embedded in every save."""

    def __init__(self):
        registry = BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG)
        ExternalTaskConverter(ExternalTask, registry)
        self.serializer = BpmnWorkflowSerializer(registry)

    def dumps(self, wf):
        return self.serializer.serialize_json(wf)

    def loads(self, text, definition, engine_):
        wf = self.serializer.deserialize_json(text)
        wf.script_engine = engine_
        return wf


def run_raw(spec, subprocess_specs, serializer, engine_, path):
    start = time.perf_counter()
    wf = BpmnWorkflow(spec, subprocess_specs, script_engine=engine_)
    wf.get_next_task(state=TaskState.READY).data.update({"dependencia": "Salud", "nombre_servicio": "Citas",
                                                         "ubicacion": "http://x/servicio", "canal": "web"})
    wf.do_engine_steps()
    inputs = list(path)
    while not wf.is_completed():
        ready = wf.get_tasks(state=TaskState.READY)
        task = ready[0]
        if isinstance(task.task_spec, ExternalTask):
            task.data.update(RESULTS.get(task.task_spec.topic, {}))
            task.run()
        else:
            element, form = inputs.pop(0)
            assert task.task_spec.bpmn_id == element, (task.task_spec.bpmn_id, element)
            text = serializer.dumps(wf)  # save / restore around each user task
            wf = serializer.loads(text, _Definition(spec, subprocess_specs), engine_)
            task = wf.get_task_from_id(task.id)
            task.data.update({"nombre_portal": "Citas", "ubicacion_portal": "http://x/servicio", **form})
            task.run()
        wf.do_engine_steps()
    return time.perf_counter() - start


class _Definition:
    def __init__(self, spec, subprocess_specs):
        self.spec, self.subprocess_specs = spec, subprocess_specs


def stored_bytes(engine, iid):
    with engine.db.read() as conn:
        state = conn.execute(select(instances.c.state).where(instances.c.id == iid)).scalar()
        rows = conn.execute(select(events).where(events.c.instance_id == iid)).mappings().all()
    event_bytes = sum(len(json.dumps({k: v for k, v in r.items()}, default=str, ensure_ascii=False).encode()) for r in rows)
    return len(state.encode()), event_bytes, len(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=25)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-engine-")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = Config(database_url=f"sqlite:///{tmp}/bench.db", portal_url=f"{base}/portal")
    cfg.constants = {"ESPERA_REVERIFICACION": "PT0S"}
    engine = Engine(cfg)
    Portal.engine = engine
    engine.init()
    engine.deploy(SYSTEM, [(f.name, f.read_bytes()) for f in FILES])
    engine.add_user(SYSTEM, "sol", ["solicitante"], "Secretaría de Salud", email="sol@x.mx")
    engine.add_user(SYSTEM, "mesa", ["mesa_ayuda"], email="mesa@x.mx")
    engine.add_user(SYSTEM, "ge", ["gobierno_electronico"], email="ge@x.mx")

    parser = MotorParser()
    trees = [parse_xml(f.read_bytes()) for f in FILES]
    for f, t in zip(FILES, trees):
        parser.add_bpmn_xml(t, f.name)
    spec, subs = parser.get_spec("PSDT05"), parser.get_subprocess_specs("PSDT05")
    serializer, safe = StateSerializer(), script_engine(cfg.constants)

    figures, worker, stock = {}, engine.worker("bench"), StockSerializer()
    for name, path in (("happy", HAPPY), ("rework", REWORK)):
        run_motor(engine, worker, base, path), run_raw(spec, subs, stock, safe, path)  # warm up
        motor_times, raw_times, lean_times, iids = [], [], [], []
        for _ in range(args.runs):  # interleaved, so drift hits all alike
            t, iid = run_motor(engine, worker, base, path)
            motor_times.append(t)
            iids.append(iid)
            raw_times.append(run_raw(spec, subs, stock, safe, path))
            lean_times.append(run_raw(spec, subs, serializer, safe, path))
        m, r, lean = (statistics.median(x) * 1000 for x in (motor_times, raw_times, lean_times))
        state, ev, n = stored_bytes(engine, iids[-1])
        figures[name] = (m, r, state, ev, n)
        print(f"{name:7s} motor median {m:6.1f} ms | raw SpiffWorkflow, its own serializer (specs embedded) "
              f"{r:6.1f} ms, ratio {m / r:4.2f} | raw with motor's spec-less state {lean:5.1f} ms, ratio {m / lean:4.2f}")
        print(f"{name:7s} stored per completed instance: state {state / 1024:.1f} KB + {n} events "
              f"{ev / 1024:.1f} KB = {(state + ev) / 1024:.1f} KB")
    server.shutdown()
    happy = figures["happy"]
    print(f"happy_path_kb_per_instance: {(happy[2] + happy[3]) / 1024:.1f}")
    print(f"engine_overhead_ratio: {happy[0] / happy[1]:.2f}")


if __name__ == "__main__":
    main()
