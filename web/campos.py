"""From the engine's form field dicts (motor/forms.py) to HTML inputs and back.

Validation is the engine's (`clean_submission`, raised as InvalidData.fields);
here we only choose the widget, show current or submitted values, and collect
what the browser sent.
"""


def widget(field):
    """string -> text/url/textarea, long -> number, boolean -> radio Sí/No,
    date -> date, enum -> select."""
    kind = field["type"]
    if kind == "string":
        props = field.get("properties") or {}
        if str(props.get("multilinea", "")).lower() in ("true", "1", "si", "sí"):
            return "textarea"
        return "url" if props.get("formato") == "url" else "text"
    return {"long": "number", "boolean": "radio", "date": "date", "enum": "select"}.get(kind, "text")


def shown(value):
    """A current value as the string an input shows."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def values_for(fields, submitted=None):
    """field id -> string to show: what was submitted (after an error) or the current value."""
    out = {}
    for f in fields:
        if submitted is not None and f["id"] in submitted and not f.get("readonly"):
            out[f["id"]] = shown(submitted[f["id"]])
        else:
            out[f["id"]] = shown(f.get("value"))
    return out


def collect(fields, form):
    """What the browser sent for the editable fields. A field missing from the
    post (an unchecked radio) counts as sent empty, so the engine reports it
    when required instead of falling back to the current value."""
    return {f["id"]: form.get(f["id"], "") for f in fields if not f.get("readonly")}
