"""Task forms: read from `camunda:formData`, rendered by callers, validated here.

A form is a list of plain dicts (JSON-ready) so it can be stored in the
user_tasks table and shown without deserializing the workflow.
"""
import re
from datetime import date
from urllib.parse import urlsplit

from .errors import InvalidData

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
_C = "{%s}" % CAMUNDA_NS
FIELD_TYPES = {"string", "long", "boolean", "date", "enum"}
CONSTRAINTS = {"required", "readonly", "minlength", "maxlength", "min", "max"}
NUMERIC_CONSTRAINTS = {"minlength", "maxlength", "min", "max"}
MAX_STRING = 10000  # cap for string fields without an explicit maxlength
FIELD_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
VARIABLE_DEFAULT = re.compile(r"^\$\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}$")
TRUE_WORDS = {"true", "1", "si", "sí", "on", "yes"}
FALSE_WORDS = {"false", "0", "no", "off"}


def read_form(node):
    """The form fields under an element's extensionElements (raw strings kept
    for validation; see `form_problems`)."""
    fields = []
    for xf in node.iterfind(f".//{_C}formData/{_C}formField"):
        field = {
            "id": xf.get("id") or "",
            "label": xf.get("label") or xf.get("id") or "",
            "type": xf.get("type") or "string",
            "default": xf.get("defaultValue"),
            "constraints": {},
            "properties": {},
            "options": [],
            "line": xf.sourceline or 0,
        }
        for c in xf.iterfind(f"{_C}validation/{_C}constraint"):
            field["constraints"][c.get("name") or ""] = c.get("config")
        for p in xf.iterfind(f"{_C}properties/{_C}property"):
            field["properties"][p.get("id") or ""] = p.get("value")
        for v in xf.iterfind(f"{_C}value"):
            field["options"].append({"id": v.get("id") or "", "name": v.get("name") or v.get("id") or ""})
        fields.append(field)
    return fields


def form_problems(fields):
    """Yield (line, message) for every malformed field definition."""
    seen = set()
    for f in fields:
        fid, line = f["id"], f["line"]
        if not FIELD_ID.match(fid):
            yield line, f"el campo '{fid}' tiene un id inválido (letras, dígitos y _; debe iniciar con letra)"
        if fid in seen:
            yield line, f"el campo '{fid}' está repetido en el formulario"
        seen.add(fid)
        if f["type"] not in FIELD_TYPES:
            yield line, f"el campo '{fid}' tiene un tipo desconocido '{f['type']}' (use {', '.join(sorted(FIELD_TYPES))})"
        if f["type"] == "enum" and not f["options"]:
            yield line, f"el campo '{fid}' es de tipo enum y no tiene valores"
        for name, config in f["constraints"].items():
            if name not in CONSTRAINTS:
                yield line, f"el campo '{fid}' tiene una restricción desconocida '{name}'"
            elif name in NUMERIC_CONSTRAINTS and not _is_int(config):
                yield line, f"la restricción '{name}' del campo '{fid}' requiere un número entero"
        default = f["default"]
        if default and default.startswith("$") and not VARIABLE_DEFAULT.match(default):
            yield line, f"el valor por omisión del campo '{fid}' debe ser ${{variable}}"


def _is_int(value):
    try:
        int(value)
        return True
    except (TypeError, ValueError):
        return False


def public_fields(fields):
    """Fields as callers show them: typed constraints, no source lines."""
    out = []
    for f in fields:
        c = f["constraints"]
        out.append({
            "id": f["id"], "label": f["label"], "type": f["type"], "default": f["default"],
            "required": "required" in c, "readonly": "readonly" in c,
            "minlength": _int_or_none(c.get("minlength")), "maxlength": _int_or_none(c.get("maxlength")),
            "min": _int_or_none(c.get("min")), "max": _int_or_none(c.get("max")),
            "enum": [dict(o) for o in f["options"]],
            "properties": dict(f["properties"]),
        })
    return out


def _int_or_none(value):
    return int(value) if _is_int(value) else None


def with_values(fields, data):
    """Attach each field's current value: `${var}` defaults read task data."""
    out = []
    for f in fields:
        value = f["default"]
        m = VARIABLE_DEFAULT.match(value or "")
        if m:
            value = data.get(m.group(1))
        elif f["type"] == "boolean" and value is not None:
            value = str(value).lower() in TRUE_WORDS
        out.append({**f, "value": value})
    return out


def clean_submission(fields, submitted):
    """Validate submitted values against public fields (with their current
    `value` when known); return typed data or raise InvalidData with one
    Spanish message per field."""
    if not isinstance(submitted, dict):
        raise InvalidData({"_": "Se esperaba un objeto con los campos del formulario"})
    submitted = dict(submitted)
    errors, clean = {}, {}
    known = {f["id"] for f in fields}
    for key in submitted:
        if key not in known:
            errors[key] = "Campo desconocido en este formulario"
    for f in fields:
        fid = f["id"]
        if f["readonly"]:
            continue  # shown, never taken from the user
        # An omitted field takes its shown value (API and CLI callers); a field
        # sent empty was cleared on purpose.
        raw = submitted[fid] if fid in submitted else f.get("value")
        if _is_blank(raw):
            if f["required"]:
                errors[fid] = "Este campo es obligatorio"
            continue
        try:
            clean[fid] = _convert(f, raw)
        except ValueError as exc:
            errors[fid] = str(exc)
    if errors:
        raise InvalidData(errors)
    return clean


def _is_blank(raw):
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def _convert(f, raw):
    kind = f["type"]
    if kind == "boolean":
        return _to_bool(raw)
    if kind == "long":
        return _to_long(f, raw)
    if kind == "date":
        return _to_date(raw)
    if kind == "enum":
        ids = [o["id"] for o in f["enum"]]
        if str(raw) not in ids:
            raise ValueError("Seleccione una de las opciones: " + ", ".join(ids))
        return str(raw)
    return _to_string(f, raw)


def _to_bool(raw):
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("Indique sí o no")


def _to_long(f, raw):
    if isinstance(raw, bool) or not re.fullmatch(r"-?\d{1,18}", str(raw).strip()):
        raise ValueError("Escriba un número entero")
    value = int(str(raw).strip())
    if f["min"] is not None and value < f["min"]:
        raise ValueError(f"El valor mínimo es {f['min']}")
    if f["max"] is not None and value > f["max"]:
        raise ValueError(f"El valor máximo es {f['max']}")
    return value


def _to_date(raw):
    try:
        return date.fromisoformat(str(raw).strip()).isoformat()
    except ValueError:
        raise ValueError("Escriba una fecha válida (AAAA-MM-DD)") from None


def _to_string(f, raw):
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ValueError("Escriba un texto")
    value = str(raw).strip()
    limit = f["maxlength"] if f["maxlength"] is not None else MAX_STRING
    if len(value) > limit:
        raise ValueError(f"Máximo {limit} caracteres (tiene {len(value)})")
    if f["minlength"] is not None and len(value) < f["minlength"]:
        raise ValueError(f"Mínimo {f['minlength']} caracteres")
    if f["properties"].get("formato") == "url" and not is_web_url(value):
        raise ValueError("Escriba una dirección web válida que inicie con http:// o https://")
    return value


def is_web_url(value):
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value
