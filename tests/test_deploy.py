"""Validation and deployment: bad or hostile diagrams are refused with
FILE:LINE: ELEMENT_ID: message and nothing is deployed; versions are kept per
content hash; running instances keep their version."""
import pytest
from sqlalchemy import func, select

from motor.config import PROJECT_ROOT
from motor.db import process_versions
from motor.engine import SYSTEM
from motor.errors import InvalidDiagram, NotAllowed


P05 = (PROJECT_ROOT / "procesos" / "psdt05.bpmn").read_text(encoding="utf-8")
P07 = (PROJECT_ROOT / "procesos" / "psdt07.bpmn").read_text(encoding="utf-8")
NAME = "procesos/psdt05.bpmn"


def _line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _versions(engine):
    with engine.db.read() as conn:
        return conn.execute(select(func.count()).select_from(process_versions)).scalar()


XXE = P05.replace('<?xml version="1.0" encoding="UTF-8"?>',
                  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', 1)
LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
          + ']>\n<lolz>&lol9;</lolz>')

BROKEN = {
    "malformed": (P05[:5000], "XML mal formado", "-"),
    "xxe": (XXE, "DOCTYPE", "-"),
    "billion_laughs": (LAUGHS, "DOCTYPE", "-"),
    "not_bpmn": ('<?xml version="1.0"?><html><body>hola</body></html>', "no es un documento BPMN", "-"),
    "unknown_topic": (P05.replace('camunda:topic="portal.publicar"', 'camunda:topic="portal.desconocido"'),
                      "no hay un manejador registrado para el tópico 'portal.desconocido'", "Task_3_2_Publica"),
    "missing_called_process": (P05.replace('calledElement="PSDT07"', 'calledElement="PSDT99"'),
                               "el proceso llamado 'PSDT99' no existe", "Call_3_3_Monitoreo"),
    "hostile_import": (P05.replace(">satisfecho == True<", ">__import__('os').system('id')<"),
                       "no se permite el nombre '__import__'", "Flow_5_2_Si", "__import__"),
    "hostile_subclasses": (P05.replace(">satisfecho == True<", ">().__class__.__base__.__subclasses__()<"),
                           "expresión no permitida", "Flow_5_2_Si", "__subclasses__"),
    "unknown_role": (P05.replace('camunda:candidateGroups="mesa_ayuda,solicitante"', 'camunda:candidateGroups="mesa_ayuda,jefe"'),
                     "el rol 'jefe' de camunda:candidateGroups no existe", "Task_5_1_Confirma"),
    "lane_without_role": (P05.replace('name="Jefe del Departamento de Gobierno Electrónico"', 'name="Otra área"'),
                          "el carril «Otra área» no corresponde a ningún rol conocido", "Task_3_Publica"),
    "bad_field_type": (P05.replace('id="satisfecho" label="¿El servicio fue satisfactorio?" type="boolean"',
                                   'id="satisfecho" label="¿El servicio fue satisfactorio?" type="color"'),
                       "tipo desconocido 'color'", "Task_5_1_Confirma", 'id="satisfecho"'),
    "reserved_id": (P05.replace('"Gateway_Reingreso"', '"End"'), "está reservado", "End"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_diagram_is_refused_with_a_located_message_and_nothing_deployed(engine, case):
    text, message, element, *anchor = BROKEN[case]
    before = _versions(engine)
    problems = engine.validate([(NAME, text.encode()), ("procesos/psdt07.bpmn", P07.encode())])
    assert problems, case
    first = problems[0]
    assert message in first.message and first.element_id == element and first.file == NAME, str(first)
    assert str(first).startswith(f"{NAME}:{first.line}: {element}: ")
    if element not in ("-", "End"):
        anchor = anchor[0] if anchor else f'id="{element}"'
        assert first.line == _line_of(text, anchor), (first.line, _line_of(text, anchor))
    with pytest.raises(InvalidDiagram):
        engine.deploy(SYSTEM, [(NAME, text.encode()), ("procesos/psdt07.bpmn", P07.encode())])
    assert _versions(engine) == before


def test_a_hostile_expression_never_runs_even_if_stored(driver, engine, tmp_path):
    """Bypass deploy-time validation and store a hostile condition directly:
    the step fails cleanly and the instance is left as it was."""
    marker = tmp_path / "pwned"
    evil = P05.replace(">satisfecho == True<", f">open('{marker}', 'w') is None<")
    from motor.validation import Checked
    from motor.xmlparse import parse_xml
    from motor import definitions
    with engine.db.transaction() as conn:
        definitions.deploy_checked(conn, [Checked(NAME, parse_xml(evil.encode()))], "intruso")
    iid = driver.start()
    driver.through_publication(iid)
    task = driver.task(iid, "mesa", "Task_5_1_Confirma")
    with pytest.raises(Exception) as info:
        engine.complete(driver.user("mesa"), task["id"], {"satisfecho": True})
    assert "no se permite la llamada a 'open'" in str(info.value)
    assert not marker.exists()
    assert driver.pending(iid) == ["Task_5_1_Confirma"]


def test_redeploying_unchanged_content_creates_no_new_version(engine):
    files = [(NAME, P05.encode()), ("procesos/psdt07.bpmn", P07.encode())]
    again = engine.deploy(SYSTEM, files)
    assert [(r["process_id"], r["version"], r["created"]) for r in again] == [("PSDT05", 1, False), ("PSDT07", 1, False)]
    assert _versions(engine) == 2


def test_only_analysts_and_admins_deploy(engine, driver):
    with pytest.raises(NotAllowed):
        engine.deploy(driver.user("ge"), [(NAME, P05.encode())])


def test_running_instances_keep_their_version_and_new_ones_start_on_the_latest(engine, driver):
    old = driver.start()
    renamed = P05.replace('name="3. Realiza publicación de servicio electrónico"', 'name="3. Publica el servicio (v2)"')
    [v2] = [r for r in engine.deploy(SYSTEM, [(NAME, renamed.encode())]) if r["process_id"] == "PSDT05"]
    assert v2["version"] == 2 and v2["created"]
    new = driver.start()
    for iid in (old, new):
        driver.complete(iid, "mesa", "Task_2_Registra")
    driver.work()
    names = {t["instance"]: (t["name"], t["version"]) for t in engine.tasks(driver.user("ge"))}
    assert names[old] == ("3. Realiza publicación de servicio electrónico", 1)
    assert names[new] == ("3. Publica el servicio (v2)", 2)
    for iid in (old, new):
        driver.publish(iid)
        driver.close_satisfied(iid)
        assert driver.show(iid)["status"] == "completada"
    assert (driver.show(old)["version"], driver.show(new)["version"]) == (1, 2)
