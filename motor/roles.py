"""Roles of the procedure and how BPMN lanes map onto them."""

ROLES = {
    "solicitante": "Dependencia / Área solicitante",
    "mesa_ayuda": "Jefe del Departamento de Mesa de Ayuda para Dependencias",
    "gobierno_electronico": "Jefe del Departamento de Gobierno Electrónico",
    "director": "Director de Servicios Compartidos de Tecnología",
    "auditor": "Auditor",
    "analista": "Analista de procesos",
    "admin": "Administrador del sistema",
}

# Lanes are named after the seed's "Responsable" column; match them loosely so
# an analyst retyping a lane name with other spacing or case still maps.
_LANE_TO_ROLE = {" ".join(title.casefold().split()): code for code, title in ROLES.items()}

# Who may read any instance (a solicitante sees only its own dependencia).
READ_ALL_ROLES = {"mesa_ayuda", "gobierno_electronico", "director", "auditor", "analista", "admin"}
DEPLOY_ROLES = {"analista", "admin"}


def role_for_lane(lane_name):
    if not lane_name:
        return None
    return _LANE_TO_ROLE.get(" ".join(lane_name.casefold().split()))


def split_groups(value):
    """`camunda:candidateGroups="a, b"` -> ['a', 'b']."""
    return [g.strip() for g in (value or "").split(",") if g.strip()]
