"""The auditor's pages (/auditoria: search, replay, downloads) and the
Director's indicators (/indicadores): what each role sees, what they show,
that the auditor can change nothing through the web, and the replay and
the chart working in a real browser (screenshots in test-artifacts/)."""
import csv
import io
import json
import re
import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import update
from werkzeug.serving import make_server

from conftest import deploy_and_seed, make_config
from support import Driver
from test_indicators import SALUD, SEP, Fixture, L
from test_paths import _finish_satisfied, _not_satisfied
from test_web_e2e import ARTIFACTS, browser  # noqa: F401  (the module-scoped chromium fixture)
from web_fixtures import PASSWORDS, make_app, seed_web_users

from motor.db import events
from motor.engine import SYSTEM, Engine
from motor.indicators import as_csv
from motor.xmlparse import parse_xml

NS = "{http://www.xes-standard.org/}"


@pytest.fixture
def reworked(driver):
    """A closed request that was not satisfactory once, and an open one of another dependencia."""
    a = driver.start()
    driver.through_publication(a)
    _not_satisfied(driver, a, "No abre")
    _finish_satisfied(driver, a)
    b = driver.start("sol_otra", nombre_servicio="Becas en línea")
    return a, b


def _step(body):
    m = re.search(r"<script type=\"application/json\" data-paso-datos>(.*?)</script>", body, re.S)
    return json.loads(m.group(1))


# -- search -------------------------------------------------------------------------
def test_the_auditor_finds_requests_of_every_dependencia(client, login, engine, reworked):
    a, b = reworked
    folio = engine.show(SYSTEM, a)["folio"]
    login("auditor")
    body = client.get("/auditoria").get_data(as_text=True)
    assert "<strong>2</strong> solicitudes encontradas" in body
    assert f'href="/auditoria/instancias/{a}"' in body and f'href="/auditoria/instancias/{b}"' in body
    assert "Secretaría de Educación" in body and "Secretaría de Salud" in body
    for query, found, missing in ((f"folio={folio}", a, b), ("dependencia=Secretaría de Educación", b, a),
                                  ("estado=completada", a, b), ("version=1&estado=en_curso", b, a)):
        body = client.get(f"/auditoria?{query}").get_data(as_text=True)
        assert "<strong>1</strong> solicitud encontrada" in body, query
        assert f"/auditoria/instancias/{found}\"" in body and f"/auditoria/instancias/{missing}\"" not in body
    today = datetime.now(timezone.utc).date()
    body = client.get(f"/auditoria?desde={today.replace(year=today.year - 1)}&hasta={today.replace(year=today.year - 1)}")
    assert "Ninguna solicitud cumple" in body.get_data(as_text=True)
    bad = client.get("/auditoria?desde=31-12-2025")
    assert bad.status_code == 400 and "Use una fecha AAAA-MM-DD" in bad.get_data(as_text=True)


@pytest.mark.parametrize("who", ["sol", "mesa", "ge", "director", "analista"])
def test_other_roles_cannot_open_the_audit_pages(client, login, reworked, who):
    a, _ = reworked
    login(who)
    for url in ("/auditoria", f"/auditoria/instancias/{a}", "/auditoria/exportar.xes", "/auditoria/exportar.csv"):
        assert client.get(url).status_code == 403, url


def test_signed_out_users_are_sent_to_sign_in(client, reworked):
    for url in ("/auditoria", "/indicadores", "/indicadores.csv", "/auditoria/exportar.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


# -- downloads ------------------------------------------------------------------------
def test_downloads_stream_the_found_history(client, login, engine, reworked):
    a, b = reworked
    login("auditor")
    response = client.get("/auditoria/exportar.xes?dependencia=Secretaría de Salud")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"].startswith("application/xml")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="historial-')
    root = parse_xml(response.get_data())
    traces = root.findall(f"{NS}trace")
    assert len(traces) == 1 and len(traces[0].findall(f"{NS}event")) == len(engine.history(SYSTEM, a))
    one = client.get(f"/auditoria/exportar.csv?instance={b}")
    assert one.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert f"historial-{b}-" in one.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(one.get_data(as_text=True)[1:])))
    assert {r["instancia"] for r in rows} == {str(b)} and len(rows) == len(engine.history(SYSTEM, b))
    assert client.get("/auditoria/exportar.pdf").status_code == 400
    assert client.get("/auditoria/exportar.csv?desde=ayer").status_code == 400


# -- replay ---------------------------------------------------------------------------
def test_the_replay_page_at_a_middle_step(client, login, engine, reworked):
    a, _ = reworked
    history = engine.history(SYSTEM, a)
    k = next(e["seq"] for e in history if e["type"] == "task_completed" and e["element_id"] == "Task_7_Informa")
    login("auditor")
    body = client.get(f"/auditoria/instancias/{a}?paso={k}").get_data(as_text=True)
    assert f"Paso <strong data-paso-numero>{k}</strong> de {len(history)}" in body
    assert f"Evento {k}: Tarea completada" in body and "7. Informa la no satisfacción del servicio" in body
    assert "<dt>Quién</dt><dd>mesa</dd>" in body
    assert f'paso={k - 1}"' in body and f'paso={k + 1}"' in body
    assert "Íntegra" in body and "Coincide" in body
    assert body.count("data-replay-diagrama=") == 2 and "bpmn-navigated-viewer.production.min.js" in body
    assert "js/replay.js" in body
    step = _step(body)
    main = step["procesos"]["PSDT05"]
    assert main["current"] == "Task_7_Informa" and main["visits"]["Gateway_5_2"] == 1
    assert main["flows"]["Flow_5_2_No"] == 1 and "Flow_5_2_Si" not in main["flows"]
    assert step["procesos"]["PSDT07"]["visits"]["Task_VerificaPortal"] == 1
    # data before and after: the causes entered at this step are the change
    assert re.search(r'<tr class="cambio"><th scope="row"><code>causas_no_satisfaccion</code></th>\s*<td>—</td><td>No abre</td>',
                     body)
    later = _step(client.get(f"/auditoria/instancias/{a}").get_data(as_text=True))
    assert later["paso"] == len(history) and later["procesos"]["PSDT05"]["visits"]["Task_3_Publica"] == 2
    assert later["procesos"]["PSDT05"]["flows"]["Flow_Reingreso_a_3"] == 2


def test_the_partial_step_is_what_replay_js_swaps_in(client, login, engine, reworked):
    a, _ = reworked
    login("auditor")
    part = client.get(f"/auditoria/instancias/{a}?paso=3&parcial=1").get_data(as_text=True)
    assert "<html" not in part and "Evento 3: Tarea disponible" in part and _step(part)["paso"] == 3
    start = client.get(f"/auditoria/instancias/{a}?paso=0&parcial=1").get_data(as_text=True)
    assert "Antes del primer evento" in start and _step(start)["procesos"]["PSDT05"]["completed"] == []
    assert client.get("/auditoria/instancias/999").status_code == 404


def test_the_replay_page_shows_tampering(client, login, engine, reworked):
    a, _ = reworked
    row = next(e for e in engine.history(SYSTEM, a) if e["type"] == "task_completed")
    with engine.db.transaction() as conn:
        conn.execute(update(events).where(events.c.instance_id == a, events.c.seq == row["seq"]).values(username="otro"))
    login("auditor")
    body = client.get(f"/auditoria/instancias/{a}").get_data(as_text=True)
    assert "Alterada" in body and f"Evento {row['seq']}: el hash del contenido no coincide" in body


# -- indicators -------------------------------------------------------------------------
@pytest.fixture
def quarters(engine):
    f = Fixture(engine)
    f.order(SALUD, L(2025, 1, 10, 9), L(2025, 1, 12, 9), L(2025, 1, 15, 9))
    f.order(SEP, L(2025, 3, 31, 23, 59, 59))
    f.order(SALUD, L(2025, 4, 1, 0, 0, 0), L(2025, 4, 3, 0, 0, 0))
    return f


def test_the_director_reads_the_indicator(client, login, engine, quarters):
    login("director")
    body = client.get("/indicadores?anio=2025").get_data(as_text=True)
    assert "<h1>Indicadores 2025</h1>" in body
    assert re.search(r'<th scope="row">2025-T1</th><td>2</td><td>1</td>\s*<td><strong>50.0 %</strong></td>', body)
    assert re.search(r'<th scope="row">2025-T3</th><td>0</td><td>0</td>\s*<td><strong>—</strong></td>', body)
    assert "66.7 %" in body  # the year: 2 of 3
    chart = json.loads(re.search(r'id="datos-grafica">(.*?)</script>', body, re.S).group(1))
    assert chart == {"etiquetas": ["2025-T1", "2025-T2", "2025-T3", "2025-T4"], "recibidas": [2, 1, 0, 0],
                     "publicadas": [1, 1, 0, 0], "indicador": [50.0, 100.0, None, None]}
    assert "vendor/chart.umd.js" in body and "js/indicadores.js" in body
    only = client.get(f"/indicadores?anio=2025&dependencia={SEP}").get_data(as_text=True)
    assert re.search(r'<th scope="row">2025-T1</th><td>1</td><td>0</td>', only)
    download = client.get("/indicadores.csv?anio=2025")
    assert download.headers["Content-Disposition"] == 'attachment; filename="indicadores-2025.csv"'
    assert download.get_data(as_text=True) == as_csv(engine.indicators(SYSTEM, anio=2025))
    assert client.get("/indicadores?anio=1900").status_code == 400


@pytest.mark.parametrize("who", ["sol", "mesa", "ge", "auditor"])
def test_only_the_director_sees_the_indicators(client, login, quarters, who):
    login(who)
    assert client.get("/indicadores").status_code == 403
    assert client.get("/indicadores.csv").status_code == 403


# -- the auditor changes nothing ----------------------------------------------------------
def test_every_post_route_refuses_the_auditor(app, client, login, driver, engine):
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    values = {"task_id": task["id"], "instance_id": iid, "process_id": "PSDT05", "job_id": "no-existe",
              "version": 1}
    login("auditor")
    checked = []
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods or rule.endpoint in ("auth.login", "auth.logout"):
            continue
        args = {name: values[name] for name in rule.arguments}
        url = rule.build(args, append_unknown=False)[1]
        response = client.post(url, json={}) if url.startswith("/api/") else client.post(url, data={})
        assert response.status_code == 403, f"{url}: {response.status_code}"
        checked.append(rule.endpoint)
    assert len(checked) >= 10
    assert driver.pending(iid) == ["Task_2_Registra"] and engine.history(SYSTEM, iid)[-1]["type"] == "task_ready"
    for url in ("/auditoria", f"/auditoria/instancias/{iid}", "/indicadores"):
        assert client.post(url).status_code == 405  # nothing there accepts a POST


# -- in a real browser ---------------------------------------------------------------------
@pytest.fixture
def served(sqlite_database, portal):
    engine = Engine(make_config(sqlite_database, portal.portal_url), db=sqlite_database)
    portal.engine = engine
    deploy_and_seed(engine)
    seed_web_users(engine)
    d = Driver(engine, portal)
    iid = d.start()
    d.through_publication(iid)
    _not_satisfied(d, iid, "La liga abre una página en blanco")
    _finish_satisfied(d, iid)
    d.start("sol_otra", nombre_servicio="Becas en línea")
    year = datetime.now(timezone.utc).year
    f = Fixture(engine)
    for month, published in ((1, 3), (2, None), (2, 6), (4, 2), (5, 9), (7, None)):
        f.order(SALUD if month % 2 else SEP, L(year, month, 10, 10), L(year, month, 10 + published, 10) if published else None)
    f.no_conformidad(iid, L(year, 5, 11, 10))
    app = make_app(engine)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", engine, iid
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def _sign_in(context, base, username):
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=usuario]", username)
    page.fill("input[name=clave]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


@pytest.mark.browser
def test_replay_and_indicators_in_a_browser(browser, served):
    base, engine, iid = served
    ARTIFACTS.mkdir(exist_ok=True)
    history = engine.history(SYSTEM, iid)
    middle = next(e["seq"] for e in history if e["type"] == "task_completed" and e["element_id"] == "Task_8_Corrige")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-MX")
    page = _sign_in(context, base, "auditor")
    page.goto(f"{base}/auditoria")
    page.screenshot(path=str(ARTIFACTS / "auditoria-busqueda.png"), full_page=True)
    page.click(f"a[href='/auditoria/instancias/{iid}']")
    page.wait_for_selector("[data-reproductor][data-listo=si]")
    assert page.locator("[data-replay-diagrama=PSDT05] .djs-element.completado").count() > 10
    assert page.locator("[data-replay-diagrama=PSDT05] .visitas-badge").count() >= 6  # the loop: 2× and ×2
    page.locator("[data-replay-diagrama=PSDT05]").screenshot(path=str(ARTIFACTS / "auditoria-reproduccion-final.png"))
    # move to the middle step with the slider: panels and markers follow without a reload
    page.evaluate("""k => { const s = document.querySelector('[data-paso-deslizador]');
                             s.value = k; s.dispatchEvent(new Event('input')); }""", middle)
    page.wait_for_selector(f"[data-reproductor][data-paso='{middle}']")
    assert page.url.endswith(f"?paso={middle}")
    assert "8. Verifica y corrige anomalías" in page.inner_text("[data-paso-panel]")
    current = page.locator("[data-replay-diagrama=PSDT05] .djs-element.actual")
    assert current.count() == 1 and current.get_attribute("data-element-id") == "Task_8_Corrige"
    assert page.locator("[data-replay-diagrama=PSDT05] .djs-connection.flujo-tomado[data-element-id=Flow_5_2_No]").count() == 1
    assert page.locator("[data-replay-diagrama=PSDT05] .djs-connection.flujo-tomado[data-element-id=Flow_5_2_Si]").count() == 0
    page.click("[data-paso-siguiente]")
    page.wait_for_selector(f"[data-reproductor][data-paso='{middle + 1}']")
    page.click("[data-paso-anterior]")
    page.wait_for_selector(f"[data-reproductor][data-paso='{middle}']")
    page.screenshot(path=str(ARTIFACTS / "auditoria-reproduccion.png"), full_page=True)
    page.locator("[data-replay-diagrama=PSDT05]").screenshot(path=str(ARTIFACTS / "auditoria-reproduccion-diagrama.png"))
    context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-MX")
    page = _sign_in(context, base, "director")
    page.goto(f"{base}/indicadores")
    page.wait_for_selector("#grafica-indicador[data-listo=si]")
    assert page.evaluate("window.graficaIndicador.data.datasets.length") == 3
    page.screenshot(path=str(ARTIFACTS / "indicadores.png"), full_page=True)
    context.close()

