"""Deploy-time checks. Each finding is a Problem printed FILE:LINE: ID: message.

Nothing is deployed unless every file passes: XML safety, the BPMN 2.0
schema, roles, handlers, called processes, safe expressions, well-formed forms,
and finally SpiffWorkflow's own parser.
"""
from functools import lru_cache

from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException

from .bpmn import BPMN_NS, MotorParser
from .errors import Problem
from .expressions import ExpressionError, check_expression
from .forms import CAMUNDA_NS, form_problems, read_form
from .roles import ROLES, role_for_lane, split_groups
from .xmlparse import XmlError, parse_xml

B = "{%s}" % BPMN_NS
C = "{%s}" % CAMUNDA_NS
RESERVED_IDS = {"Start", "End", "Root"}  # collide with SpiffWorkflow's internal specs
FLOW_NODES = {"startEvent", "endEvent", "userTask", "serviceTask", "task", "manualTask", "scriptTask",
              "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway",
              "callActivity", "subProcess", "intermediateCatchEvent", "intermediateThrowEvent",
              "boundaryEvent", "sendTask", "receiveTask", "businessRuleTask"}
FORBIDDEN = {"scriptTask": "no se permiten tareas de script: use una tarea de servicio con un manejador registrado",
             "businessRuleTask": "no se admiten tareas de reglas de negocio (DMN)"}


@lru_cache(maxsize=1)
def _schema():
    return BpmnValidator()


class Checked:
    """A file that parsed: its tree and the process ids it defines."""

    def __init__(self, name, tree):
        self.name, self.tree = name, tree
        self.processes = [p for p in tree.getroot().iter(f"{B}process")]


def validate(files, topics, known_processes=()):
    """files: [(file_name, bytes)]; topics: registered handler topics;
    known_processes: ids already deployed. Returns (problems, checked files)."""
    problems, checked = [], []
    for name, data in files:
        try:
            tree = parse_xml(data)
        except XmlError as exc:
            problems.append(Problem(name, exc.line, "-", exc.message))
            continue
        schema_problem = _schema_problem(name, tree)
        if schema_problem:
            problems.append(schema_problem)
            continue
        checked.append(Checked(name, tree))
    defined = {p.get("id") for c in checked for p in c.processes} | set(known_processes)
    for c in checked:
        problems.extend(_element_problems(c, topics, defined))
    if not problems:
        problems.extend(_spiff_problems(checked))
    return problems, checked


def _schema_problem(name, tree):
    if tree.getroot().tag != f"{B}definitions":
        return Problem(name, tree.getroot().sourceline, "-", "el archivo no es un documento BPMN 2.0 (falta bpmn:definitions)")
    validator = _schema().validator
    if validator.validate(tree):
        return None
    err = validator.error_log.last_error
    return Problem(name, err.line, "-", f"no cumple el esquema BPMN 2.0: {err.message}")


def _element_problems(checked, topics, defined):
    name = checked.name
    if not checked.processes:
        yield Problem(name, checked.tree.getroot().sourceline, "-", "el archivo no define ningún proceso (bpmn:process)")
    for process in checked.processes:
        lanes = _lane_names(process)
        for node in process.iter():
            if not isinstance(node.tag, str) or not node.tag.startswith(B):
                continue
            yield from _node_problems(name, node, node.tag[len(B):], lanes, topics, defined)


def _node_problems(file, node, kind, lanes, topics, defined):
    eid, line = node.get("id") or "-", node.sourceline
    problem = lambda msg: Problem(file, line, eid, msg)  # noqa: E731
    if kind in FLOW_NODES and eid in RESERVED_IDS:
        yield problem(f"el id '{eid}' está reservado por el motor; cámbielo")
    if kind in FORBIDDEN:
        yield problem(FORBIDDEN[kind])
    if kind == "serviceTask":
        yield from map(problem, _service_problems(node, topics))
    if kind == "userTask":
        yield from map(problem, _role_problems(node, lanes.get(eid)))
    if kind in ("userTask", "startEvent"):
        for fline, msg in form_problems(read_form(node)):
            yield Problem(file, fline or line, eid, msg)
    if kind == "callActivity":
        called = node.get("calledElement")
        if not called:
            yield problem("la actividad de llamada no indica el proceso que llama (calledElement)")
        elif called not in defined:
            yield problem(f"el proceso llamado '{called}' no existe ni se está desplegando")
    if kind in ("conditionExpression", "timeDuration", "timeDate", "timeCycle"):
        owner = node.getparent()
        owner = owner.getparent() if kind.startswith("time") else owner
        try:
            check_expression((node.text or "").strip())
        except ExpressionError as exc:
            yield Problem(file, line, owner.get("id") or "-", f"expresión no permitida: {exc.message}")


def _service_problems(node, topics):
    if node.get(f"{C}type") != "external" or not node.get(f"{C}topic"):
        yield "la tarea de servicio debe ser externa (camunda:type=\"external\") con un camunda:topic"
        return
    topic = node.get(f"{C}topic")
    if topic not in topics:
        yield f"no hay un manejador registrado para el tópico '{topic}' (disponibles: {', '.join(sorted(topics))})"


def _role_problems(node, lane_name):
    groups = split_groups(node.get(f"{C}candidateGroups"))
    if groups:
        for g in groups:
            if g not in ROLES:
                yield f"el rol '{g}' de camunda:candidateGroups no existe (roles: {', '.join(ROLES)})"
        return
    if lane_name is None:
        yield "la tarea de usuario no está en ningún carril ni tiene camunda:candidateGroups"
    elif role_for_lane(lane_name) is None:
        yield f"el carril «{lane_name}» no corresponde a ningún rol conocido"


def _lane_names(process):
    lanes = {}
    for lane in process.iter(f"{B}lane"):
        for ref in lane.iterfind(f"{B}flowNodeRef"):
            if ref.text:
                lanes[ref.text.strip()] = lane.get("name")
    return lanes


def _spiff_problems(checked):
    parser = MotorParser()
    try:
        for c in checked:
            parser.add_bpmn_xml(c.tree, c.name)
        for c in checked:
            for process in c.processes:
                if process.get("isExecutable", "true") == "true":
                    parser.get_spec(process.get("id"))
    except ValidationException as exc:
        return [Problem(exc.file_name or "-", exc.line_number, exc.id or "-", exc.message if hasattr(exc, "message") else str(exc))]
    except SpiffWorkflowException as exc:
        return [Problem(checked[0].name if checked else "-", 0, "-", str(exc))]
    return []
