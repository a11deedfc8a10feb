"""Modeling checks in the spirit of bpmnlint, run by validation on every file.

They look only at the XML tree and report what an analyst would fix in the
modeler: duplicate or reserved ids, implicit splits, unlabelled or
unconditioned gateway branches, unreachable elements, dead ends and missing
labels. Each finding is a `Problem` naming the element (id and name) and
saying what to do, in Spanish.
"""
from collections import Counter, deque

from .bpmn import BPMN_NS
from .errors import Problem

B = "{%s}" % BPMN_NS
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
ACTIVITIES = {"task", "userTask", "serviceTask", "manualTask", "scriptTask", "sendTask", "receiveTask",
              "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess"}
EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
GATEWAYS = {"exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway"}
FLOW_NODES = ACTIVITIES | EVENTS | GATEWAYS
CONTAINERS = {"process", "subProcess", "transaction", "adHocSubProcess"}

# Names SpiffWorkflow gives its own task specs; a BPMN id equal to one of them
# (or ending like them) would silently replace the engine's spec.
RESERVED_IDS = {"Start", "End", "Root"}
RESERVED_SUFFIXES = (".EndJoin", ".BoundaryEventSplit", ".BoundaryEventJoin", " [child]")

KIND_NAMES = {
    "task": "la tarea", "userTask": "la tarea de usuario", "serviceTask": "la tarea de servicio",
    "manualTask": "la tarea manual", "scriptTask": "la tarea de script", "sendTask": "la tarea de envío",
    "receiveTask": "la tarea de recepción", "businessRuleTask": "la tarea de reglas de negocio",
    "callActivity": "la actividad de llamada", "subProcess": "el subproceso", "transaction": "la transacción",
    "adHocSubProcess": "el subproceso ad hoc",
    "startEvent": "el evento de inicio", "endEvent": "el evento de fin",
    "intermediateCatchEvent": "el evento intermedio", "intermediateThrowEvent": "el evento intermedio",
    "boundaryEvent": "el evento de borde",
    "exclusiveGateway": "la compuerta exclusiva", "parallelGateway": "la compuerta paralela",
    "inclusiveGateway": "la compuerta inclusiva", "eventBasedGateway": "la compuerta basada en eventos",
    "complexGateway": "la compuerta compleja",
    "sequenceFlow": "el flujo", "lane": "el carril", "process": "el proceso",
}


def local(node):
    tag = node.tag if isinstance(node.tag, str) else ""
    return tag[len(B):] if tag.startswith(B) else None


def kind_name(node):
    return KIND_NAMES.get(local(node) or "", "el elemento")


def quoted(name):
    name = " ".join((name or "").split())
    return f"«{name}»" if name else "(sin nombre)"


def label(node, by_id=None):
    """How a message names an element: «its name»; an unnamed flow by its ends."""
    name = " ".join((node.get("name") or "").split())
    if name:
        return f"«{name}»"
    if local(node) == "sequenceFlow" and by_id is not None:
        src, tgt = by_id.get(node.get("sourceRef")), by_id.get(node.get("targetRef"))
        ends = [quoted(n.get("name")) if n is not None else "?" for n in (src, tgt)]
        return f"flujo sin nombre de {ends[0]} a {ends[1]}"
    return "(sin nombre)"


def reserved(element_id):
    return element_id in RESERVED_IDS or (element_id or "").endswith(RESERVED_SUFFIXES)


def duplicate_ids(file_name, tree):
    """Ids used twice among BPMN and diagram elements (checked before the
    schema, whose own message for this is technical and in English)."""
    seen, found = Counter(), []
    for node in tree.getroot().iter():
        if not isinstance(node.tag, str) or not node.get("id"):
            continue
        if not node.tag.startswith((B, "{%s}" % BPMNDI_NS)):
            continue
        eid = node.get("id")
        seen[eid] += 1
        if seen[eid] == 2:
            found.append(Problem(
                file_name, node.sourceline, eid,
                f"el id '{eid}' está repetido: lo usan dos o más elementos del archivo",
                label(node),
                "dé a cada elemento un id único en el panel de propiedades (campo «ID»); "
                "al copiar y pegar elementos a mano en el XML se repiten los ids"))
    return found


def lint(file_name, tree):
    """Modeling problems of one parsed BPMN file, in document order."""
    problems = []
    for container in tree.getroot().iter():
        if local(container) in CONTAINERS:
            problems.extend(_container_problems(file_name, container))
        if local(container) == "lane" and not (container.get("name") or "").strip():
            problems.append(Problem(file_name, container.sourceline, container.get("id"),
                                    "el carril no tiene nombre", None,
                                    "escriba como nombre del carril el responsable de la cédula "
                                    "(por ejemplo, «Jefe del Departamento de Gobierno Electrónico»)"))
    problems.sort(key=lambda p: p.line)
    return problems


def _container_problems(file_name, container):
    nodes = {n.get("id"): n for n in container if local(n) in FLOW_NODES}
    flows = [f for f in container if local(f) == "sequenceFlow"]
    by_id = dict(nodes)
    by_id.update((f.get("id"), f) for f in flows)
    out, inc = {nid: [] for nid in nodes}, {nid: [] for nid in nodes}

    def problem(node, what, hint):
        return Problem(file_name, node.sourceline, node.get("id"), what, label(node, by_id), hint)

    found = []
    for flow in flows:
        src, tgt = flow.get("sourceRef"), flow.get("targetRef")
        missing = [ref for ref in (src, tgt) if ref not in nodes]
        if missing:
            found.append(problem(flow, f"el flujo conecta con '{missing[0]}', que no es un elemento de este proceso",
                                 "borre el flujo y vuelva a trazarlo entre dos elementos del diagrama"))
            continue
        out[src].append(flow)
        inc[tgt].append(flow)

    for nid, node in nodes.items():
        kind = local(node)
        outgoing = out[nid]
        named = bool((node.get("name") or "").strip())
        if kind in ACTIVITIES | EVENTS and not named:
            found.append(problem(node, f"{kind_name(node)} no tiene nombre",
                                 "escriba un nombre que diga qué se hace, como en la cédula "
                                 "(por ejemplo, «4. Notifica publicación»)"))
        if kind in GATEWAYS and len(outgoing) > 1 and not named:
            found.append(problem(node, f"{kind_name(node)} divide el flujo y no tiene nombre",
                                 "escriba como nombre la pregunta que decide el camino "
                                 "(por ejemplo, «¿El servicio fue satisfactorio?»)"))
        if kind not in GATEWAYS and len(outgoing) > 1:
            names = ", ".join(f.get("id") for f in outgoing)
            found.append(problem(node, f"{kind_name(node)} tiene {len(outgoing)} flujos de salida ({names}): "
                                       "es una bifurcación implícita",
                                 "deje un solo flujo de salida y, si el camino depende de una decisión, "
                                 "agregue después una compuerta exclusiva con un flujo etiquetado por opción"))
        if kind != "endEvent" and not outgoing and not _is_event_subprocess(node):
            found.append(problem(node, f"{kind_name(node)} no tiene flujo de salida: el proceso se detendría ahí",
                                 "conecte el elemento con el paso que sigue o, si ahí termina el "
                                 "procedimiento, con un evento de fin"))
        if kind in ("exclusiveGateway", "inclusiveGateway") and len(outgoing) > 1:
            found.extend(_branch_problems(node, outgoing, problem))

    found.extend(_reachability_problems(container, nodes, out, problem))
    return found


def _branch_problems(gateway, outgoing, problem):
    default = gateway.get("default")
    gname = quoted(gateway.get("name"))
    for flow in outgoing:
        if not (flow.get("name") or "").strip():
            yield problem(flow, f"el flujo que sale de la compuerta {gname} no tiene etiqueta",
                          "escriba en el flujo la respuesta que lleva por ese camino (por ejemplo, «Sí» o «No»)")
        condition = flow.find(f"{B}conditionExpression")
        if flow.get("id") != default and (condition is None or not (condition.text or "").strip()):
            yield problem(flow, f"el flujo que sale de la compuerta {gname} no tiene condición ni es el flujo "
                                "por omisión",
                          "escriba la condición en el panel de propiedades (por ejemplo, satisfecho == True) "
                          "o marque este flujo como el flujo por omisión de la compuerta")


def _is_event_subprocess(node):
    return local(node) in CONTAINERS and node.get("triggeredByEvent") == "true"


def _reachability_problems(container, nodes, out, problem):
    starts = [nid for nid, n in nodes.items() if local(n) == "startEvent" and not _inside_event_subprocess(n)]
    if not starts:
        yield problem(container, f"{kind_name(container)} no tiene evento de inicio",
                      "agregue un evento de inicio y conéctelo con el primer paso")
        return
    attached = {}
    for nid, n in nodes.items():
        if local(n) == "boundaryEvent":
            attached.setdefault(n.get("attachedToRef"), []).append(nid)
    seen, queue = set(starts), deque(starts)
    while queue:
        nid = queue.popleft()
        nexts = [f.get("targetRef") for f in out.get(nid, [])] + attached.get(nid, [])
        for target in nexts:
            if target in nodes and target not in seen:
                seen.add(target)
                queue.append(target)
    for nid, node in nodes.items():
        if nid not in seen and not _is_event_subprocess(node):
            yield problem(node, f"{kind_name(node)} es inalcanzable: ningún camino desde el inicio del proceso "
                                "llega hasta ahí",
                          "trace un flujo desde el paso anterior hasta este elemento, o bórrelo si ya no forma "
                          "parte del procedimiento")


def _inside_event_subprocess(node):
    parent = node.getparent()
    return parent is not None and _is_event_subprocess(parent)
