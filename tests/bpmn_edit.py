"""Edits an analyst makes in the modeler, applied to the XML of procesos/
(for tests that deploy a changed diagram as a new version)."""
from lxml import etree

from motor.config import PROJECT_ROOT

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
P05 = (PROJECT_ROOT / "procesos" / "psdt05.bpmn").read_text(encoding="utf-8")
P07 = (PROJECT_ROOT / "procesos" / "psdt07.bpmn").read_text(encoding="utf-8")


def _root(text):
    return etree.fromstring(text.encode("utf-8"))


def _text(root):
    return etree.tostring(root, encoding="unicode")


def _find(root, element_id):
    found = [e for e in root.iter() if isinstance(e.tag, str) and e.tag.startswith("{%s}" % BPMN)
             and e.get("id") == element_id]
    assert len(found) == 1, element_id
    return found[0]


def add_field(text, task_id, field_id, label, kind="string", required=False):
    """Append a camunda:formField to a user task's form."""
    root = _root(text)
    form = _find(root, task_id).find(f"{{{BPMN}}}extensionElements/{{{CAMUNDA}}}formData")
    field = etree.SubElement(form, f"{{{CAMUNDA}}}formField", id=field_id, label=label, type=kind)
    if required:
        validation = etree.SubElement(field, f"{{{CAMUNDA}}}validation")
        etree.SubElement(validation, f"{{{CAMUNDA}}}constraint", name="required")
    return _text(root)


def rename(text, element_id, name):
    root = _root(text)
    _find(root, element_id).set("name", name)
    return _text(root)


def set_attr(text, element_id, attr, value):
    root = _root(text)
    node = _find(root, element_id)
    key = f"{{{CAMUNDA}}}{attr[len('camunda:'):]}" if attr.startswith("camunda:") else attr
    if value is None:
        node.attrib.pop(key, None)
    else:
        node.set(key, value)
    return _text(root)


def to_service_task(text, task_id, topic):
    """Turn a user task into an external service task (same id, name, flows)."""
    root = _root(text)
    node = _find(root, task_id)
    node.tag = f"{{{BPMN}}}serviceTask"
    for attr in list(node.attrib):
        if attr.startswith(f"{{{CAMUNDA}}}"):
            del node.attrib[attr]
    node.set(f"{{{CAMUNDA}}}type", "external")
    node.set(f"{{{CAMUNDA}}}topic", topic)
    ext = node.find(f"{{{BPMN}}}extensionElements")
    if ext is not None:
        node.remove(ext)
    return _text(root)


def bypass(text, node_id):
    """Remove a node with one incoming and one outgoing flow, joining the
    incoming flow to the next node (and dropping its diagram shapes)."""
    root = _root(text)
    node = _find(root, node_id)
    process = node.getparent()
    flows = [f for f in process.iter(f"{{{BPMN}}}sequenceFlow")]
    [f_in] = [f for f in flows if f.get("targetRef") == node_id]
    [f_out] = [f for f in flows if f.get("sourceRef") == node_id]
    target = _find(root, f_out.get("targetRef"))
    f_in.set("targetRef", target.get("id"))
    for inc in target.iterfind(f"{{{BPMN}}}incoming"):
        if inc.text == f_out.get("id"):
            inc.text = f_in.get("id")
    for gone in (node, f_out):
        gone.getparent().remove(gone)
    for ref in list(root.iter(f"{{{BPMN}}}flowNodeRef")):
        if ref.text == node_id:
            ref.getparent().remove(ref)
    for di in list(root.iter(f"{{{BPMNDI}}}BPMNShape", f"{{{BPMNDI}}}BPMNEdge")):
        if di.get("bpmnElement") in (node_id, f_out.get("id")):
            di.getparent().remove(di)
    return _text(root)
