"""SpiffWorkflow seams: the parser factory, our task specs, the state serializer.

Diagrams use the Camunda 7 dialect: `camunda:formData` forms, lanes (and
`camunda:candidateGroups`) for roles, and external service tasks
(`camunda:type="external" camunda:topic="..."`) run by `motor work`.
"""
import json
from uuid import UUID
from dataclasses import dataclass, field

from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.specs.defaults import ManualTask, StartEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.parser.event_parsers import CamundaStartEventParser
from SpiffWorkflow.camunda.parser.task_spec import UserTaskParser
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.camunda.specs.user_task import UserTask

from .forms import CAMUNDA_NS, read_form
from .roles import split_groups
from .xmlparse import parse_xml

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"


class ExternalTask(ManualTask):
    """A service task done outside the engine: the step that reaches it stops,
    `motor work` runs the handler for `topic` and completes it."""

    def __init__(self, wf_spec, bpmn_id, topic=None, external_type=None, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.topic = topic
        self.external_type = external_type


class ExternalTaskParser(TaskParser):
    def create_task(self):
        return self.spec_class(
            self.spec, self.bpmn_id,
            topic=self.attribute("topic", "camunda"),
            external_type=self.attribute("type", "camunda"),
            **self.bpmn_attributes)


class FormUserTaskParser(UserTaskParser):
    def create_task(self):
        task = super().create_task()
        task.form_fields = read_form(self.node)
        task.candidate_groups = split_groups(self.attribute("candidateGroups", "camunda"))
        return task


class FormStartEventParser(CamundaStartEventParser):
    def create_task(self):
        task = super().create_task()
        task.form_fields = read_form(self.node)
        return task


class MotorParser(CamundaParser):
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("serviceTask"): (ExternalTaskParser, ExternalTask),
        full_tag("userTask"): (FormUserTaskParser, UserTask),
        full_tag("startEvent"): (FormStartEventParser, StartEvent),
    }


@dataclass
class ProcessSource:
    """One process definition as stored: its id, file name and XML text."""
    process_id: str
    file_name: str
    xml: str


@dataclass
class Definition:
    """Parsed specs for one instance: the main process and what it calls."""
    process_id: str
    spec: object
    subprocess_specs: dict
    starter_groups: list = field(default_factory=list)
    start_form: list = field(default_factory=list)


def parse_sources(sources, main_process_id):
    """Build the Definition of `main_process_id` from stored process sources.

    The parser keeps lanes keyed by id() of each XML tree, so the trees must
    stay alive until parsing is done: we hold them in `trees`.
    """
    parser = MotorParser()
    trees = []
    for src in sources:
        tree = parse_xml(src.xml.encode("utf-8"))
        trees.append(tree)
        parser.add_bpmn_xml(tree, src.file_name)
    spec = parser.get_spec(main_process_id)
    subprocess_specs = parser.get_subprocess_specs(main_process_id)
    process_node = _process_node(trees, main_process_id)
    start_form = []
    for ts in spec.task_specs.values():
        if isinstance(ts, StartEvent) and getattr(ts, "form_fields", None):
            start_form = ts.form_fields
    starters = split_groups(process_node.get(f"{{{CAMUNDA_NS}}}candidateStarterGroups")) if process_node is not None else []
    return Definition(main_process_id, spec, subprocess_specs, starters, start_form)


def _process_node(trees, process_id):
    for tree in trees:
        for node in tree.getroot().iter(f"{{{BPMN_NS}}}process"):
            if node.get("id") == process_id:
                return node
    return None


class StateConverter(BpmnWorkflowConverter):
    """Workflow state without its specs: instances reference their deployed
    definition version instead of embedding it (and the stock configs have no
    converter for our ExternalTask, which therefore never needs one)."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, definition=None):
        workflow = self.target_class(definition.spec, definition.subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


class StateSerializer:
    """Turns a running BpmnWorkflow into JSON text and back."""

    def __init__(self):
        registry = BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG)
        StateConverter(BpmnWorkflow, registry)
        self._serializer = BpmnWorkflowSerializer(registry)

    def dumps(self, workflow):
        return json.dumps(self._serializer.to_dict(workflow), separators=(",", ":"), ensure_ascii=False)

    def loads(self, text, definition, script_engine):
        workflow = self._serializer.from_dict(json.loads(text), definition=definition)
        # A restored workflow does not keep its script engine: set it again.
        workflow.script_engine = script_engine
        return workflow
