"""What changed between two versions of a process, read from their XML.

Elements are matched by id. For each one we compare what an analyst edits
and what users notice: name, type, lane and roles, external topic, form
fields, conditions, flow ends, called process and timers. Every change
carries a Spanish sentence (`text`) for the page and the CLI.
"""
from .bpmn import BPMN_NS
from .forms import CAMUNDA_NS, public_fields, read_form
from .lint import FLOW_NODES, KIND_NAMES, local
from .roles import role_for_lane, split_groups
from .xmlparse import parse_xml

B = "{%s}" % BPMN_NS
C = "{%s}" % CAMUNDA_NS
FIELD_ATTRS = {"label": "etiqueta", "type": "tipo", "default": "valor por omisión", "required": "obligatorio",
               "readonly": "solo lectura", "minlength": "longitud mínima", "maxlength": "longitud máxima",
               "min": "mínimo", "max": "máximo", "enum": "opciones", "properties": "propiedades"}


def type_name(kind):
    text = KIND_NAMES.get(kind, kind)
    return text.split(" ", 1)[1] if text.startswith(("el ", "la ")) else text


def elements(xml_text, process_id):
    """id -> comparable description of every element of one process."""
    tree = parse_xml(xml_text.encode("utf-8") if isinstance(xml_text, str) else xml_text)
    process = next((p for p in tree.getroot().iter(f"{B}process") if p.get("id") == process_id), None)
    if process is None:
        return {}
    lanes = {}
    found = {process_id: {"id": process_id, "type": "process", "name": process.get("name"), "lane": None,
                          "roles": split_groups(process.get(f"{C}candidateStarterGroups"))}}
    for lane in process.iter(f"{B}lane"):
        found[lane.get("id")] = {"id": lane.get("id"), "type": "lane", "name": lane.get("name"), "lane": None,
                                 "roles": [r for r in [role_for_lane(lane.get("name"))] if r]}
        for ref in lane.iterfind(f"{B}flowNodeRef"):
            lanes[(ref.text or "").strip()] = lane.get("name")
    for node in process.iter():
        kind = local(node)
        if kind not in FLOW_NODES and kind != "sequenceFlow":
            continue
        eid = node.get("id")
        item = {"id": eid, "type": kind, "name": node.get("name"), "lane": lanes.get(eid)}
        if kind == "userTask":
            groups = split_groups(node.get(f"{C}candidateGroups"))
            role = role_for_lane(item["lane"])
            item["roles"] = groups or ([role] if role else [])
        if kind in ("userTask", "startEvent"):
            item["form"] = {f["id"]: f for f in public_fields(read_form(node))}
        if kind == "serviceTask":
            item["topic"] = node.get(f"{C}topic")
        if kind == "callActivity":
            item["called"] = node.get("calledElement")
        if kind == "sequenceFlow":
            cond = node.find(f"{B}conditionExpression")
            item.update(source=node.get("sourceRef"), target=node.get("targetRef"),
                        condition=(cond.text or "").strip() if cond is not None else None)
        if kind.endswith("Gateway"):
            item["default"] = node.get("default")
        timer = node.find(f"{B}timerEventDefinition")
        if timer is not None:
            expr = next((t for t in timer if local(t) in ("timeDuration", "timeDate", "timeCycle")), None)
            item["timer"] = (expr.text or "").strip() if expr is not None else ""
        found[eid] = item
    return found


def diff_elements(old, new):
    """Compare two `elements()` maps: added, removed and changed elements."""
    added = [_brief(new[i]) for i in new if i not in old]
    removed = [_brief(old[i]) for i in old if i not in new]
    changed = []
    for eid, before in old.items():
        after = new.get(eid)
        if after is None:
            continue
        changes = element_changes(before, after)
        if changes:
            changed.append({**_brief(after), "changes": changes})
    return {"added": added, "removed": removed, "changed": changed,
            "summary": {"added": len(added), "removed": len(removed), "changed": len(changed)}}


def diff_xml(old_xml, new_xml, process_id):
    return diff_elements(elements(old_xml, process_id), elements(new_xml, process_id))


def _brief(item):
    return {"id": item["id"], "type": item["type"], "type_name": type_name(item["type"]),
            "name": item.get("name"), "lane": item.get("lane")}


def element_changes(before, after):
    """List of {"field", "from", "to", "text"} (forms: added/removed/changed)."""
    out = []

    def simple(field, label, fmt=_q):
        a, b = before.get(field), after.get(field)
        if a != b:
            out.append({"field": field, "from": a, "to": b, "text": f"{label}: {fmt(a)} → {fmt(b)}"})

    if before["type"] != after["type"]:
        out.append({"field": "type", "from": before["type"], "to": after["type"],
                    "text": f"tipo: {type_name(before['type'])} → {type_name(after['type'])}"})
    simple("name", "nombre")
    if before["type"] not in ("process", "lane"):
        simple("lane", "carril")
    roles_label = "roles que inician el proceso" if before["type"] == "process" else "roles"
    if (before.get("roles") or []) != (after.get("roles") or []) and ("roles" in before or "roles" in after):
        simple("roles", roles_label, _roles)
    simple("topic", "tópico", _plain)
    simple("called", "proceso llamado", _plain)
    simple("condition", "condición", _plain)
    simple("source", "origen", _plain)
    simple("target", "destino", _plain)
    simple("default", "flujo por omisión", _plain)
    simple("timer", "temporizador", _plain)
    if "form" in before or "form" in after:
        form = form_changes(before.get("form") or {}, after.get("form") or {})
        if form:
            out.append(form)
    return out


def form_changes(old, new):
    added = [f for f in new if f not in old]
    removed = [f for f in old if f not in new]
    changed = []
    for fid in old:
        if fid in new and old[fid] != new[fid]:
            attrs = [k for k in FIELD_ATTRS if old[fid].get(k) != new[fid].get(k)]
            changed.append({"id": fid, "attrs": attrs,
                            "from": {k: old[fid].get(k) for k in attrs}, "to": {k: new[fid].get(k) for k in attrs}})
    if not (added or removed or changed):
        return None
    parts = []
    if added:
        parts.append("campos agregados: " + ", ".join(f"{f} («{new[f]['label']}»)" for f in added))
    if removed:
        parts.append("campos quitados: " + ", ".join(f"{f} («{old[f]['label']}»)" for f in removed))
    if changed:
        parts.append("campos cambiados: " + ", ".join(
            f"{c['id']} ({', '.join(FIELD_ATTRS[a] for a in c['attrs'])})" for c in changed))
    return {"field": "form", "added": added, "removed": removed, "changed": changed,
            "text": "formulario: " + "; ".join(parts)}


def _q(value):
    return f"«{value}»" if value else "(sin valor)"


def _plain(value):
    return str(value) if value else "(sin valor)"


def _roles(value):
    return ", ".join(value) if value else "(ninguno)"
