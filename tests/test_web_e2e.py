"""End to end in a real browser: Debian's chromium driven by Playwright against
the app on a real loopback server, with a `motor work` loop in a thread and
PSDT-07 checking this very app's /portal and a real service URL.

A solicitante, Mesa de Ayuda, Gobierno Electrónico and the Director, each in
their own browser context, take one request through the whole procedure using
only the pages: the first monitoring fails (the service answers 503), so the
Director works the Annex 1 treatment; then the service is not satisfactory
once (activities 7, 8 and back to 3) and finally it is closed.
Screenshots of every page land in test-artifacts/.
"""
import os
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from conftest import IN_CI, deploy_and_seed, make_config
from motor.config import PROJECT_ROOT
from motor.engine import SYSTEM, Engine
from servers import Route, http_server
from web_fixtures import PASSWORDS, make_app, seed_web_users

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
VENDOR = PROJECT_ROOT / "web" / "static" / "vendor"
SERVICE = "Citas médicas en línea"


def _require(condition, message):
    if condition:
        return
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    _require(Path(CHROMIUM).exists(), f"NOTICE: {CHROMIUM} no existe (apt-get install chromium); "
                                      "se omiten las pruebas de navegador")
    _require((VENDOR / "bpmn-navigated-viewer.production.min.js").exists(),
             "faltan web/static/vendor (ejecute sh tools/vendor.sh o make setup)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live(sqlite_database):
    """The app on a free loopback port plus a worker loop; MOTOR_PORTAL_URL is its /portal."""
    engine = Engine(make_config(sqlite_database, "http://127.0.0.1:9/portal"), db=sqlite_database)
    deploy_and_seed(engine)
    seed_web_users(engine)
    app = make_app(engine, WTF_CSRF_ENABLED=True)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    base = f"http://127.0.0.1:{server.server_port}"
    engine.config.portal_url = f"{base}/portal"
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    stop = threading.Event()
    working = threading.Thread(target=engine.worker("e2e").run_forever, kwargs={"poll_seconds": 0.1, "stop": stop})
    working.start()
    try:
        yield base, engine
    finally:
        stop.set()
        working.join(10)
        server.shutdown()
        serving.join(10)
        server.server_close()


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass  # keep pytest output clean


class Person:
    """One signed-in user in their own browser context."""

    def __init__(self, browser, base, username, errors, viewport=(1280, 900)):
        self.base, self.username, self.errors = base, username, errors
        self.context = browser.new_context(locale="es-MX", viewport={"width": viewport[0], "height": viewport[1]})
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        # Script errors, CSP refusals and failed assets count; error pages we ask for do not.
        self.page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                     and errors.append(f"{username}: {m.text}"))
        self.page.on("pageerror", lambda e: errors.append(f"{username}: {e}"))
        self.page.on("response", lambda r: r.status >= 400 and r.request.resource_type != "document"
                     and errors.append(f"{username}: {r.status} {r.url}"))

    def login(self, shot=None):
        p = self.page
        p.goto(f"{self.base}/login")
        if shot:
            self.shot(shot)
        p.get_by_label("Usuario").fill(self.username)
        p.get_by_label("Contraseña").fill(PASSWORDS[self.username])
        p.get_by_role("button", name="Entrar").click()
        p.wait_for_url(f"{self.base}/tareas")
        return self

    def shot(self, name):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def open_task(self, name, timeout=20):
        """Reload the queue until the task shows up (the worker runs in the background), then open it."""
        deadline = time.monotonic() + timeout
        while True:
            self.page.goto(f"{self.base}/tareas")
            link = self.page.locator("table.cola").get_by_role("link", name=name)
            if link.count():
                link.first.click()
                self.page.wait_for_selector("form.formulario")
                return
            assert time.monotonic() < deadline, f"{self.username}: la tarea «{name}» no apareció en su cola"
            time.sleep(0.15)

    def complete(self, shot=None, **values):
        p = self.page
        for label, value in values.items():
            if value in ("Sí", "No"):  # the only boolean field of a form: radio Sí/No
                p.get_by_role("radio", name=value, exact=True).check()
            else:
                p.get_by_label(label, exact=True).fill(value)
        if shot:
            self.shot(shot)
        p.get_by_role("button", name="Completar tarea").click()
        p.wait_for_url(f"{self.base}/tareas*")
        assert "Tarea completada" in p.locator(".aviso-exito").inner_text()


@pytest.mark.browser
def test_whole_procedure_through_the_pages(browser, live):
    base, engine = live
    errors = []
    service = Route(status=503, body="servicio en mantenimiento")
    with http_server({"/citas": service}) as svc:
        started = time.monotonic()
        sol = Person(browser, base, "sol", errors).login(shot="01-login")
        mesa = Person(browser, base, "mesa", errors).login()
        ge = Person(browser, base, "ge", errors).login()
        director = Person(browser, base, "director", errors).login()

        # 1. The solicitante asks; the server rejects a location that is not http(s).
        p = sol.page
        p.get_by_role("link", name="Nueva solicitud", exact=True).click()
        p.get_by_label("Nombre del servicio electrónico").fill(SERVICE)
        p.get_by_label("Ubicación (URL) del servicio").fill("ftp://citas.salud.gob.mx")
        p.get_by_role("button", name="Registrar solicitud").click()
        assert "http:// o https://" in p.locator(".error-campo").inner_text()
        assert p.get_by_label("Nombre del servicio electrónico").input_value() == SERVICE  # kept
        sol.shot("02-nueva-solicitud-error")
        p.get_by_label("Ubicación (URL) del servicio").fill(f"{svc}/citas")
        p.get_by_role("button", name="Registrar solicitud").click()
        p.wait_for_url(f"{base}/instancias/*")
        iid = int(p.url.rsplit("/", 1)[1])
        p.wait_for_selector("[data-listo='si']")
        sol.shot("03-instancia-recien-creada")

        # 2. Mesa de Ayuda registers it (the worker opens the orden de servicio).
        mesa.page.goto(f"{base}/tareas")
        mesa.shot("04-cola-mesa")
        mesa.open_task("2. Registra datos")
        mesa.page.wait_for_selector("[data-listo='si']")
        assert mesa.page.locator(".djs-element.actual").count() == 1
        mesa.shot("05-tarea-registra")
        mesa.complete(Observaciones="Recibida; datos revisados con la dependencia")

        # 3. Gobierno Electrónico takes the task and publishes it; PSDT-07 finds the service down.
        ge.open_task("3. Realiza publicación")
        ge.page.get_by_role("button", name="Tomar").click()
        assert "Tomada por usted" in ge.page.locator(".reserva").inner_text()
        ge.complete(shot="06-tarea-publica")

        # Annex 1: the Director detects the cause and fixes it; the check passes again.
        director.open_task("Detecta la causa")
        director.shot("07-tarea-anexo1-detecta")
        director.complete(**{"Causa detectada": "El servidor de la dependencia estaba en mantenimiento"})
        director.open_task("Subsana el problema")
        service.status = 200
        director.complete(shot="08-tarea-anexo1-subsana", **{"Acción correctiva": "Se reinició el servidor"})

        # 4. Notify, then 5.1 not satisfied -> 7 -> 8 -> back to 3 -> 4.
        ge.open_task("4. Notifica publicación")
        ge.complete(**{"Observaciones pertinentes": "Publicado en la sección Salud"})
        sol.open_task("5.1 Prueba la solución")
        sol.complete(shot="09-tarea-confirma-no", **{"satisfecho": "No",
                                                     "Comentarios del usuario": "La liga abre una página en blanco"})
        mesa.open_task("7. Informa la no satisfacción")
        assert mesa.page.get_by_label("Causas de la no satisfacción").input_value() == "La liga abre una página en blanco"
        mesa.complete()
        ge.open_task("8. Verifica y corrige")
        ge.complete(shot="10-tarea-corrige", **{"Corrección realizada": "Se corrigió la liga del servicio"})
        ge.open_task("3. Realiza publicación")
        ge.complete()
        ge.open_task("4. Notifica publicación")
        ge.complete(**{"Observaciones pertinentes": "Republicado con la liga corregida"})

        # 5.1 satisfied -> 6 closes the orden de servicio.
        sol.open_task("5.1 Prueba la solución")
        sol.complete(**{"satisfecho": "Sí", "Comentarios del usuario": "Ya funciona"})
        mesa.open_task("6. Documenta y cierra")
        assert mesa.page.locator("#campo-observaciones_publicacion").is_disabled()  # readonly shown disabled
        mesa.complete(shot="11-tarea-documenta", **{"Observaciones de cierre": "Sin pendientes"})
        _wait(lambda: engine.show(SYSTEM, iid)["status"] == "completada", "la instancia no terminó")

        # The instance page: both diagrams with markers and visit counts.
        p = director.page
        p.goto(f"{base}/instancias/{iid}")
        p.wait_for_selector("#diagrama-PSDT05[data-listo='si']")
        p.wait_for_selector("#diagrama-PSDT07[data-listo='si']")
        assert p.locator("#diagrama-PSDT05 .djs-element.completado").count() >= 10
        assert p.locator("#diagrama-PSDT07 .djs-element.completado").count() >= 5
        def visits(process, element):
            return p.locator(f"#diagrama-{process} .djs-overlays[data-container-id='{element}'] .visitas-badge").inner_text()
        assert visits("PSDT05", "Task_3_Publica") == "2" and visits("PSDT05", "Call_3_3_Monitoreo") == "2"
        assert visits("PSDT05", "Task_7_Informa") == "1" and visits("PSDT07", "Task_VerificaPortal") == "3"
        assert p.locator(".bjs-powered-by").count() == 2  # bpmn.io watermark kept (licence)
        assert "Cerrada" in p.locator(".tarjetas").inner_text()
        director.shot("12-instancia-completada")
        p.locator("#diagrama-PSDT05").screenshot(path=str(ARTIFACTS / "12b-diagrama-psdt05.png"))
        p.locator("#diagrama-PSDT07").screenshot(path=str(ARTIFACTS / "12c-diagrama-psdt07.png"))
        p.locator("#diagrama-PSDT05 [data-element-id='Call_3_3_Monitoreo']").click()
        assert p.evaluate("location.hash") == "#diagrama-PSDT07"

        # The public portal lists the service by its exact name.
        anon = browser.new_context(locale="es-MX")
        page = anon.new_page()
        page.goto(f"{base}/portal")
        link = page.get_by_role("link", name=SERVICE, exact=True)
        assert link.get_attribute("href") == f"{svc}/citas"
        page.screenshot(path=str(ARTIFACTS / "13-portal.png"), full_page=True)
        page.goto(f"{base}/instancias/{iid}")
        assert "/login" in page.url  # signed out: sent to sign in
        anon.close()

        # Requests list and the queue as the solicitante sees them.
        sol.page.goto(f"{base}/solicitudes")
        assert SERVICE in sol.page.locator("table").inner_text()
        sol.shot("14-mis-solicitudes")

        # Administration pages.
        admin = Person(browser, base, "admin", errors).login()
        for path, name in (("/admin", "15-admin-incidentes"), ("/admin/correo", "16-admin-correo"),
                           ("/admin/usuarios", "17-admin-usuarios")):
            admin.page.goto(base + path)
            admin.shot(name)
        admin.page.goto(f"{base}/instancias/999999")
        admin.shot("18-error-404")

        # On a phone: the queue and a task page stay usable.
        phone = Person(browser, base, "mesa", errors, viewport=(390, 844)).login()
        engine.start(engine.user("mesa"), "PSDT05", {"dependencia": "Secretaría de Educación",
                                                     "nombre_servicio": "Becas", "ubicacion": f"{svc}/citas",
                                                     "canal": "telefono"})
        phone.page.goto(f"{base}/tareas")
        phone.shot("19-telefono-cola")
        phone.open_task("2. Registra datos")
        phone.page.wait_for_selector("[data-listo='si']")
        phone.shot("20-telefono-tarea")
        # Someone else completes it meanwhile: a clear conflict, and the typed text is shown back.
        phone.page.get_by_label("Observaciones", exact=True).fill("Llamó la dependencia para confirmar")
        pending = engine.tasks(engine.user("mesa"), process_id="PSDT05")
        engine.complete(engine.user("mesa"), [t for t in pending if t["nombre_servicio"] == "Becas"][0]["id"], {})
        phone.page.get_by_role("button", name="Completar tarea").click()
        assert "La tarea ya no está disponible" in phone.page.locator("h1").inner_text()
        assert "Llamó la dependencia para confirmar" in phone.page.locator(".enviados").inner_text()
        phone.shot("20b-telefono-conflicto")
        phone.page.goto(f"{base}/solicitudes/nueva")
        phone.shot("21-telefono-nueva-solicitud")

        for person in (sol, mesa, ge, director, admin, phone):
            person.context.close()
        elapsed = time.monotonic() - started
    assert not errors, f"errores en la consola del navegador: {errors}"
    assert elapsed < 60, f"la prueba tardó {elapsed:.1f} s"
    shown = engine.show(SYSTEM, iid)
    assert shown["orden_servicio"]["estado"] == "cerrada"
    assert shown["no_conformidades"][0]["resuelta_en"] is not None
    history = engine.history(SYSTEM, iid)
    assert [e["data"]["to"] for e in history if e["element_id"] == "Gateway_5_2"] == [["Task_7_Informa"],
                                                                                       ["Task_6_Documenta"]]
    assert [e["user"] for e in history if e["type"] == "task_completed"] == [
        "mesa", "ge", "director", "director", "ge", "sol", "mesa", "ge", "ge", "ge", "sol", "mesa"]


def _wait(predicate, message, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def test_demo_module_serves_the_app_with_demo_users(tmp_path):
    """The README's run command: `python -m motor.demo` brings the app up with demo users."""
    demo = PROJECT_ROOT / "motor" / "demo.py"
    if not demo.exists():
        pytest.skip("motor/demo.py todavía no existe")
    import socket
    import subprocess
    import sys

    import httpx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "PORT": str(port),
           "HOST": "127.0.0.1", "WEB_ENV": "development"}
    env.pop("SECRET_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "motor.demo"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/portal", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"motor.demo terminó: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "motor.demo no respondió en 30 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, follow_redirects=False) as http:
            page = http.get("/login")
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed = http.post("/login", data={"usuario": "mesa", "clave": "demo1234", "csrf_token": token})
            assert signed.status_code == 302 and signed.headers["location"].endswith("/tareas")
            assert http.get("/tareas").status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
