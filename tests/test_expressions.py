"""The safe BPMN expression evaluator, alone and inside a real SpiffWorkflow run."""
from xml.sax.saxutils import escape

import pytest
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.util.task import TaskState

from motor.expressions import (
    ExpressionError,
    SafeEnvironment,
    SafeScriptEngine,
    check_expression,
    evaluate,
    script_engine,
)

DATA = {
    "satisfecho": True,
    "portal_visible": True,
    "servicio_responde": False,
    "a": 1,
    "b": 0,
    "nombre": "Juan",
    "respuesta": " SI ",
    "d": {"k": 5},
    "lista": [1, 2, 3],
    "datos": {"x": "uno"},
}


@pytest.mark.parametrize("source, expected", [
    ("satisfecho == True", True),
    ("portal_visible and servicio_responde", False),
    ("portal_visible or servicio_responde", True),
    ("not (a and b)", True),
    ("a < 2 <= 2 != 3", True),
    ("a >= 2", False),
    ("len(nombre) > 3", True),
    ("respuesta.strip().lower() == 'si'", True),
    ("nombre.upper().startswith('JU') and nombre.endswith('n')", True),
    ("d.get('k', 1)", 5),
    ("d.get('falta', 1)", 1),
    ("'si' if satisfecho else 'no'", "si"),
    ("2 in lista", True),
    ("5 not in lista", True),
    ("'x' in datos", True),
    ("datos['x']", "uno"),
    ("lista[0] + lista[-1]", 4),
    ("d is not None", True),
    ("(a + 2) * 3 - 4 / 2 // 1 % 5", 7.0),
    ("-a + +a", 0),
    ("'PT5M'", "PT5M"),
    ("[a, b] == [1, 0] and (a,) == (1,) and {a} == {1}", True),
    ("{'k': a}['k']", 1),
    ("max(lista) + min(lista) + sum(lista) + abs(-2) + round(2.567, 2)", 14.57),
    ("sorted(lista, reverse=True)", [3, 2, 1]),
    ("any([b, a]) and not all([a, b])", True),
    ("int('7') + float('0.5') + bool(a) + len(str(12))", 10.5),
    ("max([], default=0)", 0),
    ("'ab' * 3", "ababab"),
    ("\n    satisfecho\n  ", True),  # BPMN text is often indented
])
def test_allowed_expressions_evaluate_like_python(source, expected):
    assert evaluate(source, DATA) == expected
    assert expected == eval(source.strip(), {}, dict(DATA))  # oracle on trusted test input


@pytest.mark.parametrize("source, message", [
    ("__import__('os').system('id')", "no se permite el nombre '__import__'"),
    ("().__class__.__base__.__subclasses__()", "no se permite el atributo '__class__'"),
    ("open('/etc/passwd').read()", "no se permite la llamada a 'open'"),
    ("getattr(x, 'y')", "no se permite la llamada a 'getattr'"),
    ("eval('1')", "no se permite la llamada a 'eval'"),
    ("exec('x=1')", "no se permite la llamada a 'exec'"),
    ("globals()", "no se permite la llamada a 'globals'"),
    ("type(x)", "no se permite la llamada a 'type'"),
    ("x.__dict__", "no se permite el atributo '__dict__'"),
    ("x._privado", "no se permite el atributo '_privado'"),
    ("_oculto", "no se permite el nombre '_oculto'"),
    ("x.format(1)", "no se permite el método 'format'"),
    ("x.lower", "no se permite el atributo 'lower'"),
    ("lista[0]()", "solo se permiten llamadas a funciones y métodos permitidos"),
    ("sorted(lista, key=len)", "no se permite el argumento 'key'"),
    ("lambda: 1", "no se permite la construcción 'lambda'"),
    ("[c for c in ()]", "no se permite la construcción 'comprensión'"),
    ("any(c for c in ())", "no se permite la construcción 'expresión generadora'"),
    ("(y := 1)", "no se permite la construcción ':='"),
    ("[*lista]", "no se permite la construcción '*'"),
    ("{**d}", "no se permite la construcción '**'"),
    ("f'{x}'", "no se permite la construcción 'f-string'"),
    ("lista[0:2]", "no se permite la construcción 'rebanado'"),
    ("datos[a + 1]", "solo se permiten índices constantes o variables"),
    ("b'x'", "no se permite la constante b'x'"),
    ("'a' * 10**9", "no se permite el operador '**'"),
    ("10**10**10", "no se permite el operador '**'"),
    ("9**999999", "no se permite el operador '**'"),
    ("1 << 9999", "no se permite el operador '<<'"),
    ("10000000000000", "el número 10000000000000 excede el máximo permitido"),
    ("1" * 1001, "expresión demasiado larga"),
    ("(" * 500 + "1" + ")" * 500, "expresión demasiado larga"),
    ("(" * 300 + "1" + ")" * 300, "expresión inválida (línea 1"),
    ("-" * 90 + "1", "expresión demasiado anidada"),
    ("not " * 200 + "1", "expresión demasiado compleja"),
    ("[" * 150 + "]" * 150, "expresión demasiado compleja"),
    ("satisfecho ==", "expresión inválida (línea 1)"),
    ("a + )", "expresión inválida (línea 1, columna 5)"),
    ("", "expresión inválida"),
    ("a\x00", "expresión inválida"),
])
def test_hostile_or_malformed_expressions_are_rejected_before_running(source, message):
    with pytest.raises(ExpressionError) as caught:
        check_expression(source)
    assert message in caught.value.message
    with pytest.raises(ExpressionError):  # evaluate checks first, whatever the data
        evaluate(source, {"x": "a", "lista": [len], "open": open, "d": {}})


@pytest.mark.parametrize("source, message", [
    ("'a' * 1000000000000", "el resultado de '*' es demasiado grande"),
    ("lista * 3", "no se permite repetir listas con '*'"),
    ("round(1, -1000000000)", "demasiados dígitos en 'round'"),
    ("'%s' % nombre", "no se permite el formato de texto con '%'"),
    ("desconocida == 1", "la variable 'desconocida' no está definida"),
    ("len > 1", "la variable 'len' no está definida"),  # builtins are not values
    ("1 / b", "división entre cero"),
    ("datos['falta']", "la clave 'falta' no existe"),
    ("lista[9]", "índice fuera de rango"),
    ("nombre + 1", "tipos de datos incompatibles"),
    ("int('x')", "valor no válido"),
    ("a.lower()", "el método 'lower' no aplica a un valor de tipo int"),
    ("a[0]", "no se puede indexar un valor de tipo int"),
])
def test_runtime_failures_become_spanish_expression_errors(source, message):
    check_expression(source)
    with pytest.raises(ExpressionError) as caught:
        evaluate(source, DATA)
    assert message in caught.value.message


def test_checked_form_is_cached_per_source():
    from motor.expressions import _compile
    before = _compile.cache_info().hits
    evaluate("a + 41", {"a": 1})
    assert evaluate("a + 41", {"a": 2}) == 43
    assert _compile.cache_info().hits > before
    assert _compile.cache_info().maxsize is not None


def test_non_text_expression_is_rejected():
    with pytest.raises(ExpressionError, match="la expresión debe ser texto"):
        check_expression(["satisfecho"])


# --- SpiffWorkflow integration ---------------------------------------------------

def _gateway_bpmn(condition_si, condition_no):
    """start -> user task -> exclusive gateway -> (fin_si | fin_no)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="defs" targetNamespace="http://example.org/bpmn">
  <bpmn:process id="proceso" isExecutable="true">
    <bpmn:startEvent id="inicio"/>
    <bpmn:userTask id="captura" name="Captura"/>
    <bpmn:exclusiveGateway id="decision"/>
    <bpmn:endEvent id="fin_si"/>
    <bpmn:endEvent id="fin_no"/>
    <bpmn:sequenceFlow id="f1" sourceRef="inicio" targetRef="captura"/>
    <bpmn:sequenceFlow id="f2" sourceRef="captura" targetRef="decision"/>
    <bpmn:sequenceFlow id="f_si" sourceRef="decision" targetRef="fin_si">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(condition_si)}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_no" sourceRef="decision" targetRef="fin_no">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(condition_no)}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
  </bpmn:process>
</bpmn:definitions>""".encode("utf-8")


TIMER_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="defs" targetNamespace="http://example.org/bpmn">
  <bpmn:process id="proceso" isExecutable="true">
    <bpmn:startEvent id="inicio"/>
    <bpmn:userTask id="captura" name="Captura"/>
    <bpmn:intermediateCatchEvent id="espera">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">ESPERA_REVERIFICACION</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="fin"/>
    <bpmn:sequenceFlow id="f1" sourceRef="inicio" targetRef="captura"/>
    <bpmn:sequenceFlow id="f2" sourceRef="captura" targetRef="espera"/>
    <bpmn:sequenceFlow id="f3" sourceRef="espera" targetRef="fin"/>
  </bpmn:process>
</bpmn:definitions>"""


def _workflow(bpmn, engine):
    parser = BpmnParser()
    parser.add_bpmn_str(bpmn)
    workflow = BpmnWorkflow(parser.get_spec("proceso"), script_engine=engine)
    workflow.do_engine_steps()
    return workflow


def _complete_user_task(workflow, **data):
    task = workflow.get_next_task(state=TaskState.READY, manual=True)
    assert task.task_spec.name == "captura"
    task.data.update(data)
    task.run()


def _finished_at(workflow):
    done = workflow.get_tasks(state=TaskState.COMPLETED)
    return {task.task_spec.name for task in done} & {"fin_si", "fin_no", "fin"}


def _hostile_condition(target):
    return f"open({str(target)!r}, 'w').close() is None"


def test_stock_engine_would_run_the_hostile_condition(tmp_path):
    # Control: proves the hostile diagram really has a side effect under eval.
    target = tmp_path / "pwned"
    workflow = _workflow(_gateway_bpmn(_hostile_condition(target), "satisfecho"), PythonScriptEngine())
    _complete_user_task(workflow, satisfecho=True)
    workflow.do_engine_steps()
    assert target.exists()
    assert _finished_at(workflow) == {"fin_si"}


def test_safe_engine_fails_the_hostile_condition_without_side_effects(tmp_path):
    target = tmp_path / "pwned"
    workflow = _workflow(_gateway_bpmn(_hostile_condition(target), "satisfecho"), script_engine())
    _complete_user_task(workflow, satisfecho=True)
    with pytest.raises(WorkflowException) as caught:
        workflow.do_engine_steps()
    assert isinstance(caught.value, WorkflowTaskException)
    assert isinstance(caught.value.__cause__, ExpressionError)
    assert "no se permite la llamada a 'open'" in str(caught.value)
    assert not target.exists()
    assert not workflow.is_completed()


def test_workflow_with_safe_engine_survives_save_and_restore():
    workflow = _workflow(
        _gateway_bpmn("satisfecho == True and len(nombre) > 3", "not satisfecho"), script_engine())
    serializer = BpmnWorkflowSerializer()
    restored = serializer.deserialize_json(serializer.serialize_json(workflow))
    # The engine is not serialized: a restored workflow must get it again.
    restored.script_engine = script_engine()
    _complete_user_task(restored, satisfecho=True, nombre="María")
    restored.do_engine_steps()
    assert restored.is_completed()
    assert _finished_at(restored) == {"fin_si"}


def test_call_service_raises_a_clean_task_exception_not_name_error():
    workflow = _workflow(_gateway_bpmn("True", "False"), script_engine())
    task = workflow.get_next_task(state=TaskState.READY, manual=True)
    with pytest.raises(NameError):  # SpiffWorkflow 3.2.0's own bug, for contrast
        PythonScriptEngine().call_service(task, operation_name="x", operation_params={})
    with pytest.raises(WorkflowTaskException) as caught:
        workflow.script_engine.call_service(task, operation_name="x", operation_params={})
    assert "no se pudo llamar al servicio" in str(caught.value)
    assert isinstance(caught.value.__cause__, ExpressionError)


def test_scripts_are_refused_by_environment_and_engine():
    with pytest.raises(ExpressionError, match="los diagramas no pueden ejecutar scripts"):
        SafeEnvironment().execute("x = 1", {})
    workflow = _workflow(_gateway_bpmn("True", "False"), script_engine())
    task = workflow.get_next_task(state=TaskState.READY, manual=True)
    with pytest.raises(WorkflowTaskException, match="los diagramas no pueden ejecutar scripts"):
        workflow.script_engine.execute(task, "x = 1")
    assert "x" not in task.data


def test_engine_validate_uses_the_allow_list():
    engine = SafeScriptEngine()
    engine.validate("satisfecho == True")
    with pytest.raises(ExpressionError, match="'__import__'"):
        engine.validate("__import__('os')")


def test_timer_constant_is_returned_and_cannot_be_shadowed_by_task_data():
    environment = SafeEnvironment({"ESPERA_REVERIFICACION": "PT10M"})
    assert environment.evaluate("ESPERA_REVERIFICACION", {}) == "PT10M"
    shadowing = {"ESPERA_REVERIFICACION": "PT1S"}
    assert environment.evaluate("ESPERA_REVERIFICACION", shadowing, shadowing) == "PT10M"
    assert environment.evaluate('"PT5M"', {}) == "PT5M"
    with pytest.raises(TypeError):
        environment.constants["ESPERA_REVERIFICACION"] = "PT1S"


def test_timer_in_a_workflow_uses_the_engine_constant():
    # Task data asks for a 999-hour wait; the engine constant (no wait) wins.
    workflow = _workflow(TIMER_BPMN, script_engine({"ESPERA_REVERIFICACION": "PT0S"}))
    _complete_user_task(workflow, ESPERA_REVERIFICACION="PT999H")
    workflow.do_engine_steps()
    workflow.refresh_timers()
    workflow.do_engine_steps()
    assert workflow.is_completed()
    assert _finished_at(workflow) == {"fin"}
