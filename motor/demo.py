"""`make run`: the embedded demo. Creates the SQLite database, deploys
procesos/, adds one demo user per role, then serves the web app and runs a
`motor work` loop together until Ctrl-C.

Demo users exist only here (never in a production configuration).
"""
import logging
import os
import signal
import threading

from .config import PROJECT_ROOT, Config
from .engine import SYSTEM, Engine

DEMO_PASSWORD = "demo1234"
DEMO_USERS = [  # username, roles, dependencia
    ("solicitante", ["solicitante"], "Secretaría de Salud"),
    ("mesa", ["mesa_ayuda"], None),
    ("gobierno", ["gobierno_electronico"], None),
    ("director", ["director"], None),
    ("auditor", ["auditor"], None),
    ("analista", ["analista"], None),
    ("admin", ["admin"], None),
]


def prepare(engine):
    """Idempotent: schema, the diagrams of procesos/, demo users."""
    engine.init()
    files = [(f"procesos/{p.name}", p.read_bytes()) for p in sorted((PROJECT_ROOT / "procesos").glob("*.bpmn"))]
    for result in engine.deploy(SYSTEM, files):
        state = "nueva versión" if result["created"] else "sin cambios"
        print(f"  {result['process_id']} v{result['version']} ({state})")
    for username, roles, dependencia in DEMO_USERS:
        engine.add_user(SYSTEM, username, roles, dependencia, DEMO_PASSWORD, email=f"{username}@demo.local")


def _interrupt(*_):
    raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C


def main():
    from werkzeug.serving import make_server

    from web import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5000"))
    os.environ.setdefault("MOTOR_PORTAL_URL", f"http://{host}:{port}/portal")
    if os.environ.get("WEB_ENV") == "production":
        raise SystemExit("motor.demo crea usuarios de demostración: no lo use con WEB_ENV=production")
    engine = Engine(Config.from_env())
    print(f"Base de datos: {engine.db.url}")
    prepare(engine)
    app = create_app({"ENGINE": engine})
    server = make_server(host, port, app, threaded=True)
    stop = threading.Event()
    worker = threading.Thread(target=engine.worker().run_forever, kwargs={"stop": stop}, name="motor-work")
    worker.start()
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"\nSistema en http://{host}:{port}/  (usuarios de demostración: "
          f"{', '.join(u for u, _, _ in DEMO_USERS)}; contraseña {DEMO_PASSWORD})\nCtrl-C para detener.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        worker.join()
        print("Detenido.")


if __name__ == "__main__":
    main()
