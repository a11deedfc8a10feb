"""Validation messages an analyst can act on: a catalogue of diagrams with one
modeling flaw each, and the exact lines `motor validate` and /procesos print
(file, line, element id, element name, what is wrong, what to do)."""
import pytest

from bpmn_edit import P05, P07
from motor.handlers import default_registry
from motor.lint import lint
from motor.validation import validate
from motor.xmlparse import parse_xml

from test_deploy import BROKEN

NAME = "procesos/psdt05.bpmn"
TOPICS = default_registry().topics()


def _line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def problems(text):
    found, _ = validate([(NAME, text.encode()), ("procesos/psdt07.bpmn", P07.encode())], TOPICS)
    return found


FALSE_CONDITION = '<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">satisfecho == False</bpmn:conditionExpression>'
SHORTCUT = '<bpmn:sequenceFlow id="Flow_Atajo" sourceRef="Task_2_Registra" targetRef="Task_2_2_NotificaGE" />\n    '
ORPHAN = ('<bpmn:userTask id="Task_Huerfana" name="Revisa la solicitud" camunda:candidateGroups="mesa_ayuda">\n'
          '      <bpmn:outgoing>Flow_Huerfana</bpmn:outgoing>\n    </bpmn:userTask>\n'
          '    <bpmn:sequenceFlow id="Flow_Huerfana" sourceRef="Task_Huerfana" targetRef="EndEvent_OrdenCerrada" />\n    ')
FIRST_FLOW = '<bpmn:sequenceFlow id="Flow_1_a_2"'
GE_LANE = ' name="Jefe del Departamento de Gobierno Electrónico"'
LANES = ("«Dependencia / Área solicitante»; «Jefe del Departamento de Mesa de Ayuda para Dependencias»; "
         "«Jefe del Departamento de Gobierno Electrónico»; «Director de Servicios Compartidos de Tecnología»")

# case -> (diagram with one flaw, anchor of the reported line, expected line after "FILE:LINE: ")
CATALOGUE = {
    "implicit_split": (
        P05.replace("<bpmn:outgoing>Flow_2_a_2_1</bpmn:outgoing>",
                    "<bpmn:outgoing>Flow_2_a_2_1</bpmn:outgoing>\n      <bpmn:outgoing>Flow_Atajo</bpmn:outgoing>")
           .replace(FIRST_FLOW, SHORTCUT + FIRST_FLOW, 1),
        'id="Task_2_Registra"',
        "Task_2_Registra: la tarea de usuario tiene 2 flujos de salida (Flow_Atajo, Flow_2_a_2_1): es una "
        "bifurcación implícita — «2. Registra datos y canaliza la orden de servicio». Qué hacer: deje un solo "
        "flujo de salida y, si el camino depende de una decisión, agregue después una compuerta exclusiva con un "
        "flujo etiquetado por opción."),
    "unlabelled_branch": (
        P05.replace(' name="No" sourceRef="Gateway_5_2"', ' sourceRef="Gateway_5_2"'),
        'id="Flow_5_2_No"',
        "Flow_5_2_No: el flujo que sale de la compuerta «5.2 ¿El servicio fue satisfactorio?» no tiene etiqueta — "
        "flujo sin nombre de «5.2 ¿El servicio fue satisfactorio?» a «7. Informa la no satisfacción del servicio». "
        "Qué hacer: escriba en el flujo la respuesta que lleva por ese camino (por ejemplo, «Sí» o «No»)."),
    "branch_without_condition": (
        P05.replace(FALSE_CONDITION, ""),
        'id="Flow_5_2_No"',
        "Flow_5_2_No: el flujo que sale de la compuerta «5.2 ¿El servicio fue satisfactorio?» no tiene condición "
        "ni es el flujo por omisión — «No». Qué hacer: escriba la condición en el panel de propiedades (por "
        "ejemplo, satisfecho == True) o marque este flujo como el flujo por omisión de la compuerta."),
    "unreachable": (
        P05.replace(FIRST_FLOW, ORPHAN + FIRST_FLOW, 1),
        'id="Task_Huerfana"',
        "Task_Huerfana: la tarea de usuario es inalcanzable: ningún camino desde el inicio del proceso llega hasta "
        "ahí — «Revisa la solicitud». Qué hacer: trace un flujo desde el paso anterior hasta este elemento, o "
        "bórrelo si ya no forma parte del procedimiento."),
    "dead_end": (
        P05.replace('<bpmn:endEvent id="EndEvent_OrdenCerrada"', '<bpmn:intermediateThrowEvent id="EndEvent_OrdenCerrada"')
           .replace("<bpmn:incoming>Flow_6_1_a_Fin</bpmn:incoming>\n    </bpmn:endEvent>",
                    "<bpmn:incoming>Flow_6_1_a_Fin</bpmn:incoming>\n    </bpmn:intermediateThrowEvent>"),
        'id="EndEvent_OrdenCerrada"',
        "EndEvent_OrdenCerrada: el evento intermedio no tiene flujo de salida: el proceso se detendría ahí — "
        "«Orden de servicio cerrada». Qué hacer: conecte el elemento con el paso que sigue o, si ahí termina el "
        "procedimiento, con un evento de fin."),
    "duplicate_id": (
        P05.replace('id="Task_4_Notifica"', 'id="Task_3_Publica"', 1),
        'name="4. Notifica publicación"',
        "Task_3_Publica: el id 'Task_3_Publica' está repetido: lo usan dos o más elementos del archivo — «4. Notifica "
        "publicación». Qué hacer: dé a cada elemento un id único en el panel de propiedades (campo «ID»); al copiar "
        "y pegar elementos a mano en el XML se repiten los ids."),
    "reserved_suffix": (
        P05.replace('"Gateway_Reingreso"', '"PSDT05.EndJoin"'),
        'id="PSDT05.EndJoin"',
        "PSDT05.EndJoin: el id 'PSDT05.EndJoin' está reservado por el motor; cámbielo — «Reingreso a la actividad "
        "3». Qué hacer: escriba otro id en el panel de propiedades (campo «ID»), por ejemplo «Task_Revisa»; Start, "
        "End, Root y los que terminan en .EndJoin los usa el motor."),
    "unnamed_task": (
        P05.replace(' name="4.1 Notifica la integración en el Sistema de Oficios"', ""),
        'id="Task_4_1_NotificaOficios"',
        "Task_4_1_NotificaOficios: la tarea de servicio no tiene nombre — (sin nombre). Qué hacer: escriba un "
        "nombre que diga qué se hace, como en la cédula (por ejemplo, «4. Notifica publicación»)."),
    "unnamed_split_gateway": (
        P05.replace(' name="5.2 ¿El servicio fue satisfactorio?"', ""),
        'id="Gateway_5_2"',
        "Gateway_5_2: la compuerta exclusiva divide el flujo y no tiene nombre — (sin nombre). Qué hacer: escriba "
        "como nombre la pregunta que decide el camino (por ejemplo, «¿El servicio fue satisfactorio?»)."),
    "user_task_without_role": (
        P05.replace("<bpmn:flowNodeRef>Task_4_Notifica</bpmn:flowNodeRef>", ""),
        'id="Task_4_Notifica"',
        "Task_4_Notifica: la tarea de usuario no está en ningún carril ni tiene camunda:candidateGroups — «4. "
        "Notifica publicación». Qué hacer: arrastre la tarea al carril del responsable o escriba sus roles en "
        "«Candidate groups»."),
    "unknown_topic": (
        P05.replace('camunda:topic="portal.publicar"', 'camunda:topic="portal.publica"'),
        'id="Task_3_2_Publica"',
        "Task_3_2_Publica: no hay un manejador registrado para el tópico 'portal.publica' (disponibles: "
        f"{', '.join(sorted(TOPICS))}) — «3.2 Publica el servicio en el Portal de GES». Qué hacer: escriba en "
        "«Topic» uno de los tópicos disponibles, o pida al equipo de desarrollo un manejador para 'portal.publica' "
        "antes de desplegar."),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_each_flaw_gets_one_located_message_naming_the_element_and_what_to_do(case):
    text, anchor, expected = CATALOGUE[case]
    found = problems(text)
    assert [str(p) for p in found] == [f"{NAME}:{_line_of(text, anchor)}: {expected}"]


LANE_ANCHOR = 'id="Lane_GobiernoElectronico"'


def anchor(element_id):
    return f'id="{element_id}"'


def test_an_unnamed_lane_names_the_lane_and_every_task_left_without_a_role():
    text = P05.replace(GE_LANE, "", 1)
    hint = f"Qué hacer: nombre el carril como uno de los responsables: {LANES}."
    assert [str(p) for p in problems(text)] == [
        f"{NAME}:{_line_of(text, LANE_ANCHOR)}: Lane_GobiernoElectronico: el carril no "
        "tiene nombre. Qué hacer: escriba como nombre del carril el responsable de la cédula (por ejemplo, «Jefe "
        "del Departamento de Gobierno Electrónico»).",
        *[f"{NAME}:{_line_of(text, anchor(task))}: {task}: la tarea de usuario está en un carril sin nombre "
          f"y no tiene camunda:candidateGroups — «{name}». {hint}"
          for task, name in [("Task_3_Publica", "3. Realiza publicación de servicio electrónico"),
                             ("Task_4_Notifica", "4. Notifica publicación"),
                             ("Task_8_Corrige", "8. Verifica y corrige anomalías")]],
    ]


@pytest.mark.parametrize("text", [
    P05.replace(FALSE_CONDITION, "").replace('<bpmn:exclusiveGateway id="Gateway_5_2"',
                                             '<bpmn:exclusiveGateway id="Gateway_5_2" default="Flow_5_2_No"'),
    P05.replace(' name="Reingreso a la actividad 3"', ""),
], ids=["default_flow_needs_no_condition", "merge_gateway_needs_no_name"])
def test_what_bpmnlint_allows_passes(text):
    assert problems(text) == []


@pytest.mark.parametrize("path", ["psdt05.bpmn", "psdt07.bpmn"])
def test_the_shipped_diagrams_pass_every_check_with_zero_problems(path):
    text = {"psdt05.bpmn": P05, "psdt07.bpmn": P07}[path]
    assert lint(f"procesos/{path}", parse_xml(text.encode())) == []
    found, _ = validate([("procesos/psdt05.bpmn", P05.encode()), ("procesos/psdt07.bpmn", P07.encode())], TOPICS)
    assert found == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_every_message_of_the_deploy_catalogue_says_what_to_do(case):
    text = BROKEN[case][0]
    found = problems(text)
    assert found
    for p in found:
        assert ". Qué hacer: " in p.message and p.message.endswith("."), str(p)
        assert p.element_id == "-" or p.name, str(p)  # an element's message names it
        assert str(p) == f"{p.file}:{p.line}: {p.element_id}: {p.message}"


def test_problems_of_one_file_come_in_line_order():
    text = P05.replace(' name="4.1 Notifica la integración en el Sistema de Oficios"', "").replace(
        'camunda:topic="portal.publicar"', 'camunda:topic="portal.publica"')
    found = problems(text)
    assert [p.element_id for p in found] == ["Task_3_2_Publica", "Task_4_1_NotificaOficios"]
    assert [p.line for p in found] == sorted(p.line for p in found)


def test_a_process_uploaded_twice_is_named_once_with_both_files():
    found, _ = validate([("a/psdt05.bpmn", P05.encode()), ("b/psdt05.bpmn", P05.encode()),
                         ("procesos/psdt07.bpmn", P07.encode())], TOPICS)
    assert [str(p) for p in found] == [
        f"b/psdt05.bpmn:{_line_of(P05, '<bpmn:process id=')}: PSDT05: el proceso 'PSDT05' ya está definido en "
        "a/psdt05.bpmn — «Integración de Servicios Electrónicos al Portal de GES». Qué hacer: despliegue un solo "
        "archivo por proceso: quite uno de los dos archivos."]
