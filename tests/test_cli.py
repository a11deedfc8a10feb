"""The `motor` command line as scripts use it: real subprocesses, real database."""
import json
import os
import subprocess
import sys

import pytest

from motor.config import PROJECT_ROOT

from conftest import make_config
from motor.engine import Engine


@pytest.fixture
def motor(database, portal):
    env = {**os.environ, "MOTOR_DATABASE_URL": database.url.render_as_string(hide_password=False),
           "MOTOR_PORTAL_URL": portal.portal_url, "MOTOR_ESPERA_REVERIFICACION": "PT0S", "MOTOR_HTTP_TIMEOUT": "3"}
    if database.schema:
        env["MOTOR_DATABASE_SCHEMA"] = database.schema
    portal.engine = Engine(make_config(database, portal.portal_url), db=database)

    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "motor.cli", *args], cwd=PROJECT_ROOT, env=env,
                              input=stdin, capture_output=True, text=True, timeout=120)
    return run


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_runs_a_request_end_to_end_with_documented_exit_codes(motor, portal):
    assert motor("init").returncode == 0 and motor("init").returncode == 0  # idempotent
    assert motor("validate", "procesos/psdt05.bpmn", "procesos/psdt07.bpmn").returncode == 0
    deployed = json.loads(_ok(motor("deploy", "--json")))
    assert [(d["process_id"], d["version"]) for d in deployed] == [("PSDT05", 1), ("PSDT07", 1)]
    _ok(motor("users", "add", "sol", "--role", "solicitante", "--dependencia", "Secretaría de Salud",
              "--password-stdin", stdin="clave\n"))
    _ok(motor("users", "add", "mesa", "--role", "mesa_ayuda"))
    _ok(motor("users", "add", "ge", "--role", "gobierno_electronico"))
    assert motor("users", "add", "x", "--role", "rey").returncode == 3

    data = json.dumps({"nombre_servicio": "Citas", "ubicacion": portal.service_url("citas")})
    iid = int(_ok(motor("start", "PSDT05", "--user", "sol", "--data", data)).strip())
    assert motor("start", "PSDT05", "--user", "ge", "--data", data).returncode == 4
    assert motor("start", "PSDT05", "--user", "sol", "--data", "{nope").returncode == 2

    tasks = json.loads(_ok(motor("tasks", "--user", "mesa", "--json")))
    [task] = tasks
    assert task["instance"] == iid and task["element_id"] == "Task_2_Registra" and task["version"] == 1
    assert {f["id"] for f in task["form"]} == {"nombre_servicio", "ubicacion", "observaciones_mesa"}
    assert json.loads(_ok(motor("tasks", "--user", "ge", "--json"))) == []

    bad = motor("complete", task["id"], "--user", "mesa", "--data", json.dumps({"ubicacion": "nada"}))
    assert bad.returncode == 3 and "ubicacion:" in bad.stderr
    assert motor("complete", task["id"], "--user", "ge").returncode == 4
    _ok(motor("complete", task["id"], "--user", "mesa"))
    again = motor("complete", task["id"], "--user", "mesa")
    assert again.returncode == 5 and "ya fue completada" in again.stderr
    assert "elementos procesados" in _ok(motor("work", "--once"))

    shown = json.loads(_ok(motor("show", str(iid), "--json")))
    assert shown["orden_servicio"]["estado"] == "abierta" and shown["pending_tasks"][0]["element_id"] == "Task_3_Publica"
    history = json.loads(_ok(motor("history", str(iid), "--json")))
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert motor("show", "999", "--json").returncode == 1
    assert motor("bogus").returncode == 2


def test_cli_validate_prints_one_located_line_per_problem(motor, tmp_path):
    bad = tmp_path / "roto.bpmn"
    text = (PROJECT_ROOT / "procesos" / "psdt05.bpmn").read_text(encoding="utf-8")
    bad.write_text(text.replace('camunda:topic="portal.publicar"', 'camunda:topic="nada"')
                   .replace('calledElement="PSDT07"', 'calledElement="PSDT99"'), encoding="utf-8")
    result = motor("validate", str(bad))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{bad}:") and ": Task_3_2_Publica: no hay un manejador registrado" in lines[0]
    assert ": Call_3_3_Monitoreo: el proceso llamado 'PSDT99' no existe" in lines[1]
    assert motor("deploy", str(bad)).returncode == 1
    assert json.loads(_ok(motor("deploy", "--json"))) and motor("deploy", str(bad)).returncode == 1
