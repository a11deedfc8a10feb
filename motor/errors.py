"""Errors the engine raises to its callers (CLI, web). Messages are Spanish."""


class MotorError(Exception):
    """Base class; `message` is what the user sees."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class NotFound(MotorError):
    pass


class NotAllowed(MotorError):
    pass


class Conflict(MotorError):
    """The task is not ready, already completed, claimed by another, or the
    instance changed under us (optimistic lock)."""


class InvalidData(MotorError):
    """Submitted data failed validation; `fields` maps field id -> message."""

    def __init__(self, fields, message="Los datos enviados no son válidos"):
        super().__init__(message)
        self.fields = dict(fields)


class Problem:
    """One validation finding, printed as FILE:LINE: ELEMENT_ID: message.

    `message` is the whole text an analyst reads: what is wrong, then the
    element's name (`name`), then what to do (`hint`). `what` is the bare
    finding, without name or hint.
    """

    __slots__ = ("file", "line", "element_id", "what", "name", "hint")

    def __init__(self, file, line, element_id, message, name=None, hint=None):
        self.file, self.line, self.element_id = file, line or 0, element_id or "-"
        self.what, self.name, self.hint = message, name, hint

    @property
    def message(self):
        text = self.what
        if self.name:
            text += f" — {self.name}"
        if self.hint:
            text += f". Qué hacer: {self.hint}"
            text += "" if self.hint.endswith(".") else "."
        return text

    def __str__(self):
        return f"{self.file}:{self.line}: {self.element_id}: {self.message}"

    def __repr__(self):
        return f"Problem({self})"

    def __eq__(self, other):
        return isinstance(other, Problem) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def as_dict(self):
        return {"file": self.file, "line": self.line, "element_id": self.element_id, "message": self.message,
                "what": self.what, "name": self.name, "hint": self.hint, "text": str(self)}


class InvalidDiagram(MotorError):
    """Validation failed; nothing was deployed."""

    def __init__(self, problems):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)
