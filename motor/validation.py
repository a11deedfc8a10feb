"""Deploy-time checks. Each finding is a Problem printed FILE:LINE: ID: message.

Nothing is deployed unless every file passes: XML safety, unique ids, the BPMN
2.0 schema, roles, handlers, called processes, safe expressions, well-formed
forms, the modeling checks of `lint`, and finally SpiffWorkflow's own parser.
Every message names the element (id and name), says what is wrong and what to
do, in Spanish: `motor validate` and the web page print the same text.
"""
from functools import lru_cache

from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException

from .bpmn import BPMN_NS, MotorParser
from .errors import Problem
from .expressions import ExpressionError, check_expression
from .forms import CAMUNDA_NS, CONSTRAINTS, FIELD_TYPES, form_problems, read_form
from .lint import FLOW_NODES, duplicate_ids, label, lint, reserved
from .roles import ROLES, role_for_lane, split_groups
from .xmlparse import XmlError, parse_xml

B = "{%s}" % BPMN_NS
C = "{%s}" % CAMUNDA_NS
FORBIDDEN = {
    "scriptTask": ("no se permiten tareas de script: use una tarea de servicio con un manejador registrado",
                   "cambie el tipo a tarea de servicio (icono de llave), con Implementación «External» y un "
                   "tópico registrado"),
    "businessRuleTask": ("no se admiten tareas de reglas de negocio (DMN)",
                         "exprese la regla con una compuerta exclusiva y una condición en cada flujo de salida"),
}
ROLE_LIST = ", ".join(ROLES)
LANE_TITLES = "; ".join(f"«{title}»" for code, title in ROLES.items() if code not in ("admin", "analista", "auditor"))
FORM_HINT = ("corrija el campo en el grupo «Form fields» del panel de propiedades: id con letras, dígitos y _; "
             f"tipos {', '.join(sorted(FIELD_TYPES))}; restricciones {', '.join(sorted(CONSTRAINTS))}")
EXPRESSION_HINT = ("use solo variables del proceso, comparaciones (==, !=, <, >), and, or, not y funciones "
                   "simples como len o lower; por ejemplo: satisfecho == True")


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
            problems.append(Problem(name, exc.line, "-", exc.message, None, _xml_hint(exc.message)))
            continue
        duplicates = duplicate_ids(name, tree)
        if duplicates:
            problems.extend(duplicates)
            continue
        schema_problem = _schema_problem(name, tree)
        if schema_problem:
            problems.append(schema_problem)
            continue
        checked.append(Checked(name, tree))
    problems.extend(_repeated_processes(checked))
    defined = {p.get("id") for c in checked for p in c.processes} | set(known_processes)
    for c in checked:
        found = list(_element_problems(c, topics, defined)) + lint(c.name, c.tree)
        problems.extend(sorted(found, key=lambda p: p.line))
    if not problems:
        problems.extend(_spiff_problems(checked))
    return problems, checked


def _repeated_processes(checked):
    first = {}
    for c in checked:
        for process in c.processes:
            pid = process.get("id")
            if pid in first:
                yield Problem(c.name, process.sourceline, pid, f"el proceso '{pid}' ya está definido en {first[pid]}",
                              label(process), "despliegue un solo archivo por proceso: quite uno de los dos archivos")
            else:
                first[pid] = c.name


def _xml_hint(message):
    if "DOCTYPE" in message or "entidades" in message:
        return "quite la declaración <!DOCTYPE ...> o <!ENTITY ...>; los modeladores BPMN no la generan"
    if "tamaño" in message:
        return "quite documentación o diagramas sobrantes; un proceso normal ocupa unas decenas de KB"
    if "UTF-8" in message:
        return "guarde el archivo con codificación UTF-8 (Camunda Modeler lo hace así)"
    return "abra el archivo en Camunda Modeler o en el modelador del sistema y guárdelo de nuevo, sin editar el XML a mano"


def _schema_problem(name, tree):
    if tree.getroot().tag != f"{B}definitions":
        return Problem(name, tree.getroot().sourceline, "-", "el archivo no es un documento BPMN 2.0 (falta bpmn:definitions)",
                       None, "suba el archivo .bpmn que guarda el modelador, no otro documento")
    validator = _schema().validator
    if validator.validate(tree):
        return None
    err = validator.error_log.last_error
    return Problem(name, err.line, "-", f"no cumple el esquema BPMN 2.0: {err.message}", None,
                   "abra el archivo en Camunda Modeler, corrija el elemento de esa línea y guárdelo de nuevo; "
                   "no edite el XML a mano")


def _element_problems(checked, topics, defined):
    name = checked.name
    if not checked.processes:
        yield Problem(name, checked.tree.getroot().sourceline, "-", "el archivo no define ningún proceso (bpmn:process)",
                      None, "dibuje el proceso dentro de un participante (pool) o suba el archivo del proceso")
    for process in checked.processes:
        lanes = _lane_names(process)
        for node in process.iter():
            if not isinstance(node.tag, str) or not node.tag.startswith(B):
                continue
            yield from _node_problems(name, node, node.tag[len(B):], lanes, topics, defined)


def _node_problems(file, node, kind, lanes, topics, defined):
    eid, line = node.get("id") or "-", node.sourceline
    problem = lambda what, hint: Problem(file, line, eid, what, label(node), hint)  # noqa: E731
    if kind in FLOW_NODES and reserved(eid):
        yield problem(f"el id '{eid}' está reservado por el motor; cámbielo",
                      "escriba otro id en el panel de propiedades (campo «ID»), por ejemplo «Task_Revisa»; "
                      "Start, End, Root y los que terminan en .EndJoin los usa el motor")
    if kind in FORBIDDEN:
        yield problem(*FORBIDDEN[kind])
    if kind == "serviceTask":
        yield from (problem(*p) for p in _service_problems(node, topics))
    if kind == "userTask":
        yield from (problem(*p) for p in _role_problems(node, lanes.get(eid)))
    if kind in ("userTask", "startEvent"):
        for fline, msg in form_problems(read_form(node)):
            yield Problem(file, fline or line, eid, msg, label(node), FORM_HINT)
    if kind == "callActivity":
        called = node.get("calledElement")
        if not called:
            yield problem("la actividad de llamada no indica el proceso que llama (calledElement)",
                          "escriba en «Called element» el id del proceso que se llama, por ejemplo PSDT07")
        elif called not in defined:
            yield problem(f"el proceso llamado '{called}' no existe ni se está desplegando",
                          f"corrija el id en «Called element», o despliegue el archivo del proceso '{called}' "
                          "antes o junto con este")
    if kind in ("conditionExpression", "timeDuration", "timeDate", "timeCycle"):
        owner = node.getparent()
        owner = owner.getparent() if kind.startswith("time") else owner
        try:
            check_expression((node.text or "").strip())
        except ExpressionError as exc:
            yield Problem(file, line, owner.get("id") or "-", f"expresión no permitida: {exc.message}",
                          label(owner, _ids(node)), EXPRESSION_HINT)


def _ids(node):
    """id -> element of the process holding `node` (to name a flow by its ends)."""
    process = next((a for a in node.iterancestors(f"{B}process")), None)
    return {} if process is None else {n.get("id"): n for n in process.iter() if isinstance(n.tag, str) and n.get("id")}


def _service_problems(node, topics):
    available = ", ".join(sorted(topics))
    if node.get(f"{C}type") != "external" or not node.get(f"{C}topic"):
        yield ("la tarea de servicio debe ser externa (camunda:type=\"external\") con un camunda:topic",
               f"en el panel de propiedades elija Implementación «External» y escriba un tópico: {available}")
        return
    topic = node.get(f"{C}topic")
    if topic not in topics:
        yield (f"no hay un manejador registrado para el tópico '{topic}' (disponibles: {available})",
               f"escriba en «Topic» uno de los tópicos disponibles, o pida al equipo de desarrollo un manejador "
               f"para '{topic}' antes de desplegar")


def _role_problems(node, lane_name):
    groups = split_groups(node.get(f"{C}candidateGroups"))
    if groups:
        for g in groups:
            if g not in ROLES:
                yield (f"el rol '{g}' de camunda:candidateGroups no existe (roles: {ROLE_LIST})",
                       "escriba en «Candidate groups» roles de la lista, separados por comas, o déjelo vacío "
                       "para que la tarea tome el rol de su carril")
        return
    if lane_name == "":
        yield ("la tarea de usuario está en un carril sin nombre y no tiene camunda:candidateGroups",
               f"nombre el carril como uno de los responsables: {LANE_TITLES}")
    elif lane_name is None:
        yield ("la tarea de usuario no está en ningún carril ni tiene camunda:candidateGroups",
               "arrastre la tarea al carril del responsable o escriba sus roles en «Candidate groups»")
    elif role_for_lane(lane_name) is None:
        yield (f"el carril «{lane_name}» no corresponde a ningún rol conocido",
               f"nombre el carril como uno de los responsables: {LANE_TITLES}; o escriba los roles de la tarea "
               "en «Candidate groups»")


def _lane_names(process):
    lanes = {}
    for lane in process.iter(f"{B}lane"):
        for ref in lane.iterfind(f"{B}flowNodeRef"):
            if ref.text:
                lanes[ref.text.strip()] = (lane.get("name") or "").strip()
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
        what = exc.message if hasattr(exc, "message") else str(exc)
        return [Problem(exc.file_name or "-", exc.line_number, exc.id or "-", what, _name_of(checked, exc.id), SPIFF_HINT)]
    except SpiffWorkflowException as exc:
        return [Problem(checked[0].name if checked else "-", 0, "-", str(exc), None, SPIFF_HINT)]
    return []


SPIFF_HINT = ("revise en el modelador el elemento indicado y sus flujos; si el mensaje no es claro, "
              "envíe el archivo al equipo de desarrollo")


def _name_of(checked, element_id):
    for c in checked:
        for node in c.tree.getroot().iter():
            if isinstance(node.tag, str) and element_id and node.get("id") == element_id:
                return label(node)
    return None
