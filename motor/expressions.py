"""Safe evaluation of BPMN expressions (gateway conditions, timer expressions).

Diagrams come from analysts and uploads and are untrusted. SpiffWorkflow's
default environment hands expressions to CPython's eval/exec; here they never
reach it. An expression is parsed with `ast`, checked against an allow-list of
node types, names and methods, and run by the small interpreter below with
only allow-listed builtins and the given variables. Scripts are refused.
"""
import ast
import functools
import operator
from collections import ChainMap
from types import MappingProxyType
from typing import Mapping

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

MAX_SOURCE_CHARS = 1000
MAX_NODES = 200
MAX_DEPTH = 40  # keeps the recursive checker and interpreter far from RecursionError
MAX_NUMBER = 10**12
MAX_REPEAT = 10_000  # longest text that `*` may build
MAX_ROUND_DIGITS = 100


class ExpressionError(Exception):
    """An expression that is not allowed or failed; `message` is user-facing (es-MX)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _round(number, ndigits=None):
    # round(1, -10**9) would compute 10**(10**9).
    if ndigits is not None and abs(ndigits) > MAX_ROUND_DIGITS:
        raise ExpressionError("demasiados dígitos en 'round'")
    return round(number, ndigits)


FUNCTIONS = {
    "len": len, "str": str, "int": int, "float": float, "bool": bool,
    "abs": abs, "min": min, "max": max, "round": _round, "sum": sum,
    "any": any, "all": all, "sorted": sorted,
}
# `key=` is left out: it would make functions into values.
KEYWORDS = {"default", "reverse"}
# Called unbound on a receiver of the owning type, so no getattr is ever needed.
METHODS = {
    "lower": (str, str.lower), "upper": (str, str.upper), "strip": (str, str.strip),
    "startswith": (str, str.startswith), "endswith": (str, str.endswith),
    "get": (dict, dict.get),
}


def _mul(left, right):
    # Repeated lists share references, so a short expression could describe a
    # huge structure for str()/== to walk; text is bounded before it allocates.
    if isinstance(left, (list, tuple)) or isinstance(right, (list, tuple)):
        raise ExpressionError("no se permite repetir listas con '*'")
    for text, times in ((left, right), (right, left)):
        if isinstance(text, str) and isinstance(times, int) and len(text) * times > MAX_REPEAT:
            raise ExpressionError("el resultado de '*' es demasiado grande")
    return left * right


def _mod(left, right):
    # '%*d' % (10**9, 1) builds a gigabyte string; text formatting is not needed.
    if isinstance(left, str):
        raise ExpressionError("no se permite el formato de texto con '%'")
    return left % right


# `**` is refused outright: 9**999999 and 10**10**10 cost CPU/memory without bound.
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: _mod}
UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}
COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
           ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
           ast.Is: operator.is_, ast.IsNot: operator.is_not}
OPERATOR_SYMBOLS = {ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
                    ast.BitXor: "^", ast.BitAnd: "&", ast.MatMult: "@", ast.Invert: "~"}
# Comprehensions and generators are refused: they bring loops and new scopes,
# and gateway conditions do not need them (any()/all() over a list suffice).
CONSTRUCT_LABELS = {
    ast.Lambda: "lambda", ast.ListComp: "comprensión", ast.SetComp: "comprensión",
    ast.DictComp: "comprensión", ast.GeneratorExp: "expresión generadora",
    ast.NamedExpr: ":=", ast.Starred: "*", ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string", ast.Slice: "rebanado", ast.Await: "await",
}


# --- static check -----------------------------------------------------------

def _refuse_private(name, kind):
    if name.startswith("_"):
        raise ExpressionError(f"no se permite el {kind} '{name}'")


def _check_constant(node):
    value = node.value
    if value is not None and type(value) not in (str, int, float, bool):
        raise ExpressionError(f"no se permite la constante {value!r}")
    if type(value) in (int, float) and abs(value) > MAX_NUMBER:
        raise ExpressionError(f"el número {value!r} excede el máximo permitido (10^12)")


def _check_name(node):
    _refuse_private(node.id, "nombre")
    if not isinstance(node.ctx, ast.Load):
        raise ExpressionError(f"no se permite asignar '{node.id}'")


def _check_operator(node):
    if type(node.op) not in BINARY and type(node.op) not in UNARY:
        symbol = OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
        raise ExpressionError(f"no se permite el operador '{symbol}'")


def _check_dict(node):
    if None in node.keys:
        raise ExpressionError("no se permite la construcción '**'")


def _check_subscript(node):
    index = node.slice
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, (ast.USub, ast.UAdd)):
        index = index.operand  # lista[-1]
    if not isinstance(index, (ast.Constant, ast.Name)):
        raise ExpressionError("solo se permiten índices constantes o variables, p. ej. datos['x']")


def _check_call(node):
    func = node.func
    if isinstance(func, ast.Name):
        if func.id not in FUNCTIONS:
            raise ExpressionError(f"no se permite la llamada a '{func.id}'")
    elif isinstance(func, ast.Attribute):
        _refuse_private(func.attr, "atributo")
        if func.attr not in METHODS:
            raise ExpressionError(f"no se permite el método '{func.attr}'")
    else:
        raise ExpressionError("solo se permiten llamadas a funciones y métodos permitidos")
    for keyword in node.keywords:
        if keyword.arg not in KEYWORDS:
            raise ExpressionError(f"no se permite el argumento '{keyword.arg or '**'}'")


def _check_attribute(node):
    # Methods are checked by _check_call; any other attribute access is refused.
    _refuse_private(node.attr, "atributo")
    raise ExpressionError(f"no se permite el atributo '{node.attr}'")


def _no_check(node):
    pass


CHECKS = {
    ast.Constant: _check_constant, ast.Name: _check_name, ast.BoolOp: _no_check,
    ast.BinOp: _check_operator, ast.UnaryOp: _check_operator, ast.Compare: _no_check,
    ast.IfExp: _no_check, ast.List: _no_check, ast.Tuple: _no_check, ast.Set: _no_check,
    ast.Dict: _check_dict, ast.Subscript: _check_subscript, ast.Call: _check_call,
    ast.Attribute: _check_attribute,
}


def _children(node):
    if isinstance(node, ast.Call):
        # A method's Attribute node is validated by _check_call; descend past it.
        func = node.func.value if isinstance(node.func, ast.Attribute) else node.func
        return [func, *node.args, *(keyword.value for keyword in node.keywords)]
    return [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]


def _check(node, depth=0):
    if depth > MAX_DEPTH:
        raise ExpressionError("expresión demasiado anidada")
    check = CHECKS.get(type(node))
    if check is None:
        label = CONSTRUCT_LABELS.get(type(node), type(node).__name__)
        raise ExpressionError(f"no se permite la construcción '{label}'")
    # Children first, so the innermost offence is named: __import__ rather than .system.
    for child in _children(node):
        _check(child, depth + 1)
    check(node)


def _syntax_message(err):
    if not err.lineno:
        return "expresión inválida"
    column = f", columna {err.offset}" if err.offset else ""
    return f"expresión inválida (línea {err.lineno}{column})"


@functools.lru_cache(maxsize=1024)
def _compile(source):
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"expresión demasiado larga (máximo {MAX_SOURCE_CHARS} caracteres)")
    try:
        # Stripped: BPMN text is often indented, which ast rejects. Positions
        # in messages refer to the stripped text.
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(_syntax_message(err)) from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError("expresión inválida") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:  # iterative, safe on deep trees
        raise ExpressionError("expresión demasiado compleja")
    _check(tree.body)
    return tree.body


def _checked(source):
    if not isinstance(source, str):
        raise ExpressionError("la expresión debe ser texto")
    return _compile(source)


def check_expression(source: str) -> None:
    """Raise ExpressionError if `source` is not an allowed expression."""
    _checked(source)


# --- interpreter --------------------------------------------------------------

def _eval_name(node, env):
    try:
        return env[node.id]
    except KeyError:
        raise ExpressionError(f"la variable '{node.id}' no está definida") from None


def _eval_boolop(node, env):
    # Python semantics: return the first operand that decides, else the last.
    stop_when = not isinstance(node.op, ast.And)
    for operand in node.values:
        value = _eval(operand, env)
        if bool(value) == stop_when:
            return value
    return value


def _eval_compare(node, env):
    left = _eval(node.left, env)
    for op, comparator in zip(node.ops, node.comparators):
        right = _eval(comparator, env)
        if not COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _eval_subscript(node, env):
    container = _eval(node.value, env)
    if not isinstance(container, (dict, list, tuple, str)):
        raise ExpressionError(f"no se puede indexar un valor de tipo {type(container).__name__}")
    return container[_eval(node.slice, env)]


def _eval_call(node, env):
    func = node.func
    receiver = _eval(func.value, env) if isinstance(func, ast.Attribute) else None
    args = [_eval(arg, env) for arg in node.args]
    kwargs = {keyword.arg: _eval(keyword.value, env) for keyword in node.keywords}
    if isinstance(func, ast.Name):
        return FUNCTIONS[func.id](*args, **kwargs)
    owner, method = METHODS[func.attr]
    if not isinstance(receiver, owner):
        raise ExpressionError(
            f"el método '{func.attr}' no aplica a un valor de tipo {type(receiver).__name__}")
    return method(receiver, *args, **kwargs)


EVALUATORS = {
    ast.Constant: lambda node, env: node.value,
    ast.Name: _eval_name,
    ast.BoolOp: _eval_boolop,
    ast.BinOp: lambda node, env: BINARY[type(node.op)](
        _eval(node.left, env), _eval(node.right, env)),
    ast.UnaryOp: lambda node, env: UNARY[type(node.op)](_eval(node.operand, env)),
    ast.Compare: _eval_compare,
    ast.IfExp: lambda node, env: _eval(node.body if _eval(node.test, env) else node.orelse, env),
    ast.List: lambda node, env: [_eval(elt, env) for elt in node.elts],
    ast.Tuple: lambda node, env: tuple(_eval(elt, env) for elt in node.elts),
    ast.Set: lambda node, env: {_eval(elt, env) for elt in node.elts},
    ast.Dict: lambda node, env: {
        _eval(key, env): _eval(value, env) for key, value in zip(node.keys, node.values)},
    ast.Subscript: _eval_subscript,
    ast.Call: _eval_call,
}


def _eval(node, env):
    return EVALUATORS[type(node)](node, env)


def _runtime_message(err):
    if isinstance(err, ZeroDivisionError):
        return "división entre cero"
    if isinstance(err, KeyError):
        return f"la clave {err.args[0]!r} no existe" if err.args else "clave inexistente"
    if isinstance(err, IndexError):
        return "índice fuera de rango"
    if isinstance(err, TypeError):
        return "tipos de datos incompatibles en la operación"
    if isinstance(err, (OverflowError, MemoryError)):
        return "el resultado es demasiado grande"
    if isinstance(err, ValueError):
        return "valor no válido en la operación"
    return f"error al evaluar la expresión ({type(err).__name__})"


def evaluate(source: str, variables: Mapping[str, object]) -> object:
    """Check and evaluate `source` over `variables` and the allow-listed builtins."""
    tree = _checked(source)
    try:
        return _eval(tree, variables)
    except ExpressionError:
        raise
    except Exception as err:  # the original stays as __cause__ for the logs
        raise ExpressionError(_runtime_message(err)) from err


# --- SpiffWorkflow integration ------------------------------------------------

class SafeEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluates expressions with the safe interpreter; refuses scripts and services.

    Lookup order is constants, then task data, then external context (data
    objects). Engine constants win so that a diagram cannot redefine, say,
    ESPERA_REVERIFICACION by writing a task variable of that name.
    """

    def __init__(self, constants: Mapping | None = None):
        super().__init__()
        self.constants = MappingProxyType(dict(constants or {}))

    def evaluate(self, expression, context, external_context=None):
        return evaluate(expression, ChainMap(self.constants, context, external_context or {}))

    def execute(self, script, context, external_context=None):
        raise ExpressionError("los diagramas no pueden ejecutar scripts")

    def call_service(self, context, **kwargs):
        # Service tasks are run by the engine's external-task worker.
        raise ExpressionError("las tareas de servicio no se ejecutan desde el diagrama")


def _task_error(task, prefix, err):
    detail = err.message if isinstance(err, ExpressionError) else type(err).__name__
    return WorkflowTaskException(f"{prefix}: {detail}", task=task, exception=err)


def _shorten(text, limit=80):
    return text if len(text) <= limit else text[:limit] + "…"


class SafeScriptEngine(PythonScriptEngine):
    """PythonScriptEngine over SafeEnvironment, with Spanish task errors."""

    def __init__(self, constants=None):
        super().__init__(environment=SafeEnvironment(constants))

    def validate(self, expression):
        check_expression(expression)

    def evaluate(self, task, expression, external_context=None):
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except ExpressionError as err:
            prefix = f"error en la expresión '{_shorten(str(expression))}'"
            raise _task_error(task, prefix, err) from err

    def execute(self, task, script, external_context=None):
        try:
            return self.environment.execute(script, task.data, external_context)
        except ExpressionError as err:
            raise _task_error(task, "no se pudo ejecutar el script", err) from err

    def call_service(self, task, **kwargs):
        # SpiffWorkflow 3.2.0's version names an undefined `script` in its
        # except clause and turns every service error into a NameError.
        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as err:
            raise _task_error(task, "no se pudo llamar al servicio", err) from err


def script_engine(constants=None) -> SafeScriptEngine:
    return SafeScriptEngine(constants)
