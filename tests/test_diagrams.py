"""Checks on the BPMN diagrams in procesos/ and their traceability to the seed.

The diagrams are edited by hand and in Camunda Modeler; these tests make sure
they stay importable by the modeler's own model (bpmn-moddle + Camunda
extension), keep complete diagram interchange (DI), keep the contract other code
depends on (lane names, topics, form keys) and still load in SpiffWorkflow.
"""
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from motor.xmlparse import parse_xml

ROOT = Path(__file__).resolve().parents[1]
PSDT05 = ROOT / "procesos" / "psdt05.bpmn"
PSDT07 = ROOT / "procesos" / "psdt07.bpmn"
DIAGRAMS = {"procesos/psdt05.bpmn": PSDT05, "procesos/psdt07.bpmn": PSDT07}
TRAZABILIDAD = ROOT / "docs" / "trazabilidad.md"
MODDLE_CHECK = ROOT / "tools" / "moddle_check.mjs"

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
NS = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "camunda": CAMUNDA}

FLOW_NODE_TAGS = {
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "task", "userTask", "serviceTask", "scriptTask", "sendTask", "receiveTask", "manualTask",
    "businessRuleTask", "callActivity", "subProcess", "transaction",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
}
# Process children that are neither flow nodes nor sequence flows but are allowed.
OTHER_PROCESS_CHILDREN = {"documentation", "extensionElements", "laneSet", "sequenceFlow"}

ROLE_LANES = {
    "Dependencia / Área solicitante",
    "Jefe del Departamento de Mesa de Ayuda para Dependencias",
    "Jefe del Departamento de Gobierno Electrónico",
    "Director de Servicios Compartidos de Tecnología",
}


# --- helpers -----------------------------------------------------------------

def _load(path):
    return parse_xml(Path(path).read_bytes()).getroot()


def _local(el):
    return el.tag.split("}", 1)[1] if "}" in el.tag else el.tag


def _processes(root):
    return root.findall("bpmn:process", NS)


def _flow_nodes(process):
    return [el for el in process if isinstance(el.tag, str) and el.tag.startswith("{%s}" % BPMN)
            and _local(el) in FLOW_NODE_TAGS]


def _sequence_flows(process):
    return process.findall("bpmn:sequenceFlow", NS)


def _lanes(process):
    return process.findall(".//bpmn:lane", NS)


def _di_by_element(root, tag):
    return {el.get("bpmnElement"): el for el in root.iter("{%s}%s" % (BPMNDI, tag))}


def _bounds(shape):
    b = shape.find("dc:Bounds", NS)
    return tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))


def _inside(point, bounds, slack=1.0):
    x, y = point
    bx, by, bw, bh = bounds
    return bx - slack <= x <= bx + bw + slack and by - slack <= y <= by + bh + slack


def _all_ids(root):
    return {el.get("id") for el in root.iter() if isinstance(el.tag, str) and el.get("id")}


def _element(root, element_id):
    found = [el for el in root.iter() if isinstance(el.tag, str) and el.get("id") == element_id
             and el.tag.startswith("{%s}" % BPMN)]
    assert len(found) == 1, f"se esperaba un elemento BPMN con id {element_id!r}"
    return found[0]


def _require_node():
    """Return the node executable; skip (or fail under CI=true) when the toolchain is missing."""
    missing = []
    node = shutil.which("node")
    if not node:
        missing.append("el ejecutable `node`")
    for package in ("bpmn-moddle", "camunda-bpmn-moddle"):
        if not (ROOT / "node_modules" / package / "package.json").exists():
            missing.append(f"node_modules/{package}")
    if missing:
        reason = "no se puede validar con bpmn-moddle: falta " + " y ".join(missing) + " (ejecute `make setup`)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; en CI es obligatorio")
        pytest.skip(reason)
    return node


def _run_moddle_check(*args):
    node = _require_node()
    return subprocess.run([node, str(MODDLE_CHECK), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _trace_rows():
    """Rows of the fixed-layout table in docs/trazabilidad.md as dicts."""
    rows = []
    header = None
    for line in TRAZABILIDAD.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            assert header == ["Seed ref", "Descripción", "Archivo", "Elemento(s) BPMN", "Nota"], header
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        assert len(cells) == len(header), f"fila con columnas de más o de menos: {line}"
        row = dict(zip(header, cells))
        row["ids"] = re.findall(r"`([^`]+)`", row["Elemento(s) BPMN"])
        rows.append(row)
    assert rows, "docs/trazabilidad.md no tiene tabla de trazabilidad"
    return rows


# --- (a) bpmn-moddle ---------------------------------------------------------

def test_diagrams_import_into_bpmn_moddle_without_warnings():
    result = _run_moddle_check(str(PSDT05), str(PSDT07))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr and "error" not in result.stderr, result.stderr
    assert result.stdout.count("ok ") == 2, result.stdout


def test_moddle_check_rejects_unknown_camunda_attributes(tmp_path):
    broken = tmp_path / "roto.bpmn"
    broken.write_bytes(PSDT07.read_bytes().replace(b'camunda:topic="monitoreo.verificar_portal"',
                                                   b'camunda:topico="monitoreo.verificar_portal"', 1))
    result = _run_moddle_check(str(broken))
    assert result.returncode == 1
    assert "warning" in result.stderr and "topico" in result.stderr, result.stderr


# --- (b) traceability --------------------------------------------------------

def test_every_traced_element_exists_in_its_diagram():
    ids = {name: _all_ids(_load(path)) for name, path in DIAGRAMS.items()}
    for row in _trace_rows():
        archivo = row["Archivo"]
        assert archivo in DIAGRAMS, f"{row['Seed ref']}: archivo desconocido {archivo!r}"
        assert row["ids"], f"{row['Seed ref']}: sin elementos BPMN"
        missing = [i for i in row["ids"] if i not in ids[archivo]]
        assert not missing, f"{row['Seed ref']} ({row['Descripción']}): {missing} no existen en {archivo}"


def test_every_seed_activity_task_record_indicator_and_role_is_traced():
    refs = Counter(row["Seed ref"] for row in _trace_rows())
    required = ["1", "1.1", "1.2", "2", "2.1", "2.2", "3", "3.1", "3.2", "3.3", "3.4", "4", "4.1", "4.2",
                "5", "5.1", "5.2", "6", "6.1", "6.2", "7", "7.1", "8", "8 (tarea 7.1)", "8 (tarea 7.2)",
                "Registro (sección 5)", "Indicador (sección 9)", "Anexo 1"]
    assert [r for r in required if r not in refs] == []
    traced_lanes = {(row["Archivo"], i) for row in _trace_rows() if row["Seed ref"] == "Rol" for i in row["ids"]}
    for name, path in DIAGRAMS.items():
        for lane in _lanes(_processes(_load(path))[0]):
            assert (name, lane.get("id")) in traced_lanes, f"carril {lane.get('id')} de {name} sin rol trazado"


# --- (c) diagram interchange and lanes ---------------------------------------

@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_every_element_has_a_shape_or_edge_and_every_node_one_lane(name):
    root = _load(DIAGRAMS[name])
    shapes = _di_by_element(root, "BPMNShape")
    edges = _di_by_element(root, "BPMNEdge")
    for participant in root.iter("{%s}participant" % BPMN):
        assert participant.get("id") in shapes, f"sin forma para el pool {participant.get('id')}"
    for process in _processes(root):
        unexpected = [_local(el) for el in process if isinstance(el.tag, str)
                      and _local(el) not in FLOW_NODE_TAGS | OTHER_PROCESS_CHILDREN]
        assert unexpected == [], f"elementos no verificados en {name}: {unexpected}"
        nodes = {n.get("id"): n for n in _flow_nodes(process)}
        lanes = _lanes(process)
        assert lanes, f"{name} no tiene carriles"
        lane_of = Counter()
        for lane in lanes:
            assert lane.get("id") in shapes, f"sin forma para el carril {lane.get('id')}"
            lane_bounds = _bounds(shapes[lane.get("id")])
            for ref in lane.findall("bpmn:flowNodeRef", NS):
                assert ref.text in nodes, f"el carril {lane.get('id')} referencia {ref.text!r}, que no existe"
                lane_of[ref.text] += 1
                if ref.text in shapes:
                    x, y, w, h = _bounds(shapes[ref.text])
                    assert _inside((x + w / 2, y + h / 2), lane_bounds, slack=0), \
                        f"{ref.text} se dibuja fuera de su carril {lane.get('id')}"
        for node_id, node in nodes.items():
            assert node_id in shapes, f"{node_id} no tiene BPMNShape"
            assert shapes[node_id].find("dc:Bounds", NS) is not None
            assert lane_of[node_id] == 1, f"{node_id} está en {lane_of[node_id]} carriles"
            if _local(node).endswith("Event") or _local(node).endswith("Gateway"):
                assert shapes[node_id].find("bpmndi:BPMNLabel/dc:Bounds", NS) is not None, \
                    f"{node_id} sin BPMNLabel"
        for flow in _sequence_flows(process):
            fid = flow.get("id")
            assert fid in edges, f"{fid} no tiene BPMNEdge"
            points = [(float(p.get("x")), float(p.get("y"))) for p in edges[fid].findall("di:waypoint", NS)]
            assert len(points) >= 2, f"{fid} tiene menos de dos puntos"
            assert _inside(points[0], _bounds(shapes[flow.get("sourceRef")])), f"{fid} no sale de su origen"
            assert _inside(points[-1], _bounds(shapes[flow.get("targetRef")])), f"{fid} no llega a su destino"
            if flow.get("name"):
                assert edges[fid].find("bpmndi:BPMNLabel/dc:Bounds", NS) is not None, f"{fid} sin BPMNLabel"


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_incoming_and_outgoing_match_the_sequence_flows(name):
    process = _processes(_load(DIAGRAMS[name]))[0]
    expected_in, expected_out = {}, {}
    for flow in _sequence_flows(process):
        expected_out.setdefault(flow.get("sourceRef"), set()).add(flow.get("id"))
        expected_in.setdefault(flow.get("targetRef"), set()).add(flow.get("id"))
    for node in _flow_nodes(process):
        nid = node.get("id")
        assert {e.text for e in node.findall("bpmn:incoming", NS)} == expected_in.get(nid, set()), nid
        assert {e.text for e in node.findall("bpmn:outgoing", NS)} == expected_out.get(nid, set()), nid


# --- (d) round trip through bpmn-moddle --------------------------------------

def _nearest_id(el):
    """Id of the closest BPMN/BPMNDI element enclosing `el` (camunda ids are not unique)."""
    while el is not None:
        if el.get("id") and el.tag.startswith(("{%s}" % BPMN, "{%s}" % BPMNDI)):
            return el.get("id")
        el = el.getparent()
    return None


def _signature(root):
    """What a re-export must keep: ids, lanes, DI details and every camunda: item."""
    ids, camunda_attrs, camunda_elements, di_details, lane_refs = set(), set(), Counter(), Counter(), set()
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        ns = el.tag[1:].split("}")[0]
        if ns in (BPMN, BPMNDI) and el.get("id"):
            ids.add((el.tag, el.get("id")))
        for attr, value in el.attrib.items():
            if attr.startswith("{%s}" % CAMUNDA):
                camunda_attrs.add((_nearest_id(el), el.tag, attr, value))
        attrs = tuple(sorted(el.attrib.items()))
        if ns == CAMUNDA:
            camunda_elements[(_nearest_id(el), el.tag, attrs, (el.text or "").strip())] += 1
        elif ns in (DC, DI) or (ns == BPMNDI and not el.get("id")):
            di_details[(_nearest_id(el), el.tag, attrs)] += 1
        if el.tag == "{%s}flowNodeRef" % BPMN:
            lane_refs.add((el.getparent().get("id"), el.text))
    return ids, camunda_attrs, camunda_elements, di_details, lane_refs


def test_moddle_round_trip_keeps_camunda_extensions_lanes_and_di(tmp_path):
    result = _run_moddle_check("--roundtrip", str(tmp_path), str(PSDT05), str(PSDT07))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (PSDT05, PSDT07):
        exported = tmp_path / path.name
        assert exported.exists(), f"bpmn-moddle no re-exportó {path.name}"
        before, after = _signature(_load(path)), _signature(_load(exported))
        labels = ["ids", "atributos camunda", "elementos camunda", "DI", "carriles"]
        for label, old, new in zip(labels, before, after):
            lost = old - new  # set difference, or Counter difference for repeated items
            assert not lost, f"{path.name}: la re-exportación pierde {label}: {sorted(lost)[:5]}"


# --- contract ----------------------------------------------------------------

SERVICE_TOPICS = {
    PSDT05: {
        "Task_2_1_LevantaOrden": "oficios.abrir_orden",
        "Task_2_2_NotificaGE": "notificacion.orden_canalizada",
        "Task_3_2_Publica": "portal.publicar",
        "Task_4_1_NotificaOficios": "oficios.registrar_publicacion",
        "Task_4_2_Observaciones": "notificacion.observaciones",
        "Task_6_1_Cierra": "oficios.cerrar_orden",
        "Task_7_1_Notifica": "notificacion.no_satisfaccion",
    },
    PSDT07: {
        "Task_VerificaPortal": "monitoreo.verificar_portal",
        "Task_VerificaServicio": "monitoreo.verificar_servicio",
        "Task_RegistraResultado": "monitoreo.registrar_resultado",
        "Task_A1_Registra": "monitoreo.registrar_no_conformidad",
        "Task_A1_Republica": "portal.publicar",
    },
}

LANES = {
    PSDT05: {
        "Lane_Dependencia": "Dependencia / Área solicitante",
        "Lane_MesaAyuda": "Jefe del Departamento de Mesa de Ayuda para Dependencias",
        "Lane_GobiernoElectronico": "Jefe del Departamento de Gobierno Electrónico",
    },
    PSDT07: {
        "Lane_GobiernoElectronico": "Jefe del Departamento de Gobierno Electrónico",
        "Lane_Director": "Director de Servicios Compartidos de Tecnología",
    },
}


@pytest.mark.parametrize("path", [PSDT05, PSDT07], ids=lambda p: p.name)
def test_lanes_carry_the_role_names_the_engine_resolves(path):
    process = _processes(_load(path))[0]
    assert {lane.get("id"): lane.get("name") for lane in _lanes(process)} == LANES[path]
    assert set(LANES[path].values()) <= ROLE_LANES


@pytest.mark.parametrize("path", [PSDT05, PSDT07], ids=lambda p: p.name)
def test_service_tasks_are_external_with_contract_topics(path):
    process = _processes(_load(path))[0]
    found = {}
    for task in process.findall("bpmn:serviceTask", NS):
        assert task.get("{%s}type" % CAMUNDA) == "external", task.get("id")
        found[task.get("id")] = task.get("{%s}topic" % CAMUNDA)
    assert found == SERVICE_TOPICS[path]


@pytest.mark.parametrize("path", [PSDT05, PSDT07], ids=lambda p: p.name)
def test_user_tasks_use_their_id_as_form_key_and_declare_fields(path):
    process = _processes(_load(path))[0]
    for task in process.findall("bpmn:userTask", NS):
        assert task.get("{%s}formKey" % CAMUNDA) == task.get("id")
        assert task.findall("bpmn:extensionElements/camunda:formData/camunda:formField", NS), task.get("id")


@pytest.mark.parametrize("path", [PSDT05, PSDT07], ids=lambda p: p.name)
def test_every_element_documents_the_seed_reference(path):
    process = _processes(_load(path))[0]
    elements = [process, *_lanes(process), *_flow_nodes(process), *_sequence_flows(process)]
    for el in elements:
        doc = el.find("bpmn:documentation", NS)
        assert doc is not None and (doc.text or "").strip().startswith("PSDT-0"), el.get("id")
        assert "${" not in "".join(c.text or "" for c in el.findall("bpmn:conditionExpression", NS))


def test_no_element_uses_ids_reserved_by_spiffworkflow():
    for path in (PSDT05, PSDT07):
        assert not _all_ids(_load(path)) & {"Start", "End"}, path.name


def test_psdt05_routes_the_satisfaction_decision_and_the_rework_loop():
    root = _load(PSDT05)
    si, no, regresa = (_element(root, i) for i in ("Flow_5_2_Si", "Flow_5_2_No", "Flow_8_Regresa"))
    assert (si.get("name"), si.get("targetRef")) == ("Sí", "Task_6_Documenta")
    assert si.find("bpmn:conditionExpression", NS).text == "satisfecho == True"
    assert (no.get("name"), no.get("targetRef")) == ("No", "Task_7_Informa")
    assert no.find("bpmn:conditionExpression", NS).text == "satisfecho == False"
    assert (regresa.get("name"), regresa.get("targetRef")) == ("Continuar en la actividad 3", "Gateway_Reingreso")
    call = _element(root, "Call_3_3_Monitoreo")
    assert call.get("calledElement") == "PSDT07"
    process = _processes(root)[0]
    assert process.get("id") == "PSDT05" and process.get("isExecutable") == "true"
    assert process.get("{%s}candidateStarterGroups" % CAMUNDA) == "solicitante,mesa_ayuda"


def test_psdt07_waits_on_an_engine_constant_before_checking_again():
    root = _load(PSDT07)
    timer = _element(root, "Timer_A1_Espera")
    duration = timer.find("bpmn:timerEventDefinition/bpmn:timeDuration", NS)
    assert duration.text.strip() == "ESPERA_REVERIFICACION"
    assert _element(root, "Flow_A1_VerificaDeNuevo").get("targetRef") == "Gateway_Reverificacion"
    process = _processes(root)[0]
    assert process.get("{%s}candidateStarterGroups" % CAMUNDA) is None


# --- (e) SpiffWorkflow -------------------------------------------------------

def _spiff_parser():
    from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser

    parser = CamundaParser()
    parser.add_bpmn_files([str(PSDT05), str(PSDT07)])
    return parser


def test_spiff_camunda_parser_loads_psdt05_with_psdt07_as_call_activity():
    parser = _spiff_parser()
    spec = parser.get_spec("PSDT05")
    subprocesses = parser.get_subprocess_specs("PSDT05")
    assert "PSDT07" in subprocesses
    assert spec.task_specs["Task_2_Registra"].lane == "Jefe del Departamento de Mesa de Ayuda para Dependencias"
    assert subprocesses["PSDT07"].task_specs["Task_A1_Detecta"].lane == "Director de Servicios Compartidos de Tecnología"
    form = spec.task_specs["Task_3_Publica"].form
    assert [f.id for f in form.fields] == ["nombre_portal", "ubicacion_portal"]
    assert form.fields[0].default_value == "${nombre_servicio}"


def test_spiff_runs_the_rework_and_annex_1_loops_to_the_end():
    """Walk PSDT-05 once through 'no satisfactorio' and PSDT-07 once through Annex 1."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
    from SpiffWorkflow.util.task import TaskState

    parser = _spiff_parser()
    engine = PythonScriptEngine(environment=TaskDataEnvironment({"ESPERA_REVERIFICACION": "PT0S"}))
    workflow = BpmnWorkflow(parser.get_spec("PSDT05"), parser.get_subprocess_specs("PSDT05"), script_engine=engine)
    satisfied = [False, True]
    visible = [False, True, True]
    trail = []
    deadline = time.monotonic() + 20
    while not workflow.is_completed():
        assert time.monotonic() < deadline, f"el flujo no terminó; recorrido: {trail}"
        workflow.do_engine_steps()
        workflow.refresh_timers()
        pending = [t for t in workflow.get_tasks(state=TaskState.READY | TaskState.STARTED)
                   if t.task_spec.__class__.__name__ in ("UserTask", "ServiceTask")]
        if not pending:
            time.sleep(0.01)
            continue
        task = pending[0]
        bpmn_id = task.task_spec.bpmn_id
        trail.append(bpmn_id)
        if bpmn_id == "Task_5_1_Confirma":
            task.data["satisfecho"] = satisfied.pop(0)
        elif bpmn_id == "Task_VerificaPortal":
            task.data["portal_visible"] = visible.pop(0)
        elif bpmn_id == "Task_VerificaServicio":
            task.data["servicio_responde"] = True
        if task.state == TaskState.STARTED:
            task.complete()
        else:
            task.run()
    assert trail.count("Task_3_Publica") == 2, trail
    assert trail.count("Task_A1_Subsana") == 1, trail
    rework = trail.index("Task_8_Corrige")
    assert trail[rework - 2:rework + 2] == ["Task_7_Informa", "Task_7_1_Notifica", "Task_8_Corrige", "Task_3_Publica"]
    assert trail[-2:] == ["Task_6_Documenta", "Task_6_1_Cierra"], trail
