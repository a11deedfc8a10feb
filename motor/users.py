"""Users and their roles. Passwords are hashed with scrypt (stdlib)."""
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from sqlalchemy import bindparam, delete, select

from .db import user_roles, users, utcnow
from .errors import InvalidData, NotFound
from .roles import ROLES

_N, _R, _P = 2 ** 14, 8, 1


@dataclass(frozen=True)
class User:
    username: str
    roles: frozenset = field(default_factory=frozenset)
    dependencia: str | None = None
    nombre: str | None = None
    email: str | None = None

    def has(self, *roles):
        return bool(self.roles.intersection(roles))


def hash_password(password):
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(stored, password):
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (AttributeError, ValueError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def add_user(conn, username, roles, dependencia=None, password=None, nombre=None, email=None):
    """Create the user, or add roles / update details of an existing one."""
    errors = {}
    if not username or len(username) > 80 or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        errors["username"] = "Use letras, dígitos, punto, guion o guion bajo (máximo 80)"
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        errors["role"] = f"Rol desconocido: {', '.join(unknown)} (roles: {', '.join(ROLES)})"
    if "solicitante" in roles and not dependencia:
        errors["dependencia"] = "Un solicitante debe pertenecer a una dependencia"
    if errors:
        raise InvalidData(errors)
    row = conn.execute(select(users).where(users.c.username == username)).first()
    values = {k: v for k, v in {"dependencia": dependencia, "nombre": nombre, "email": email}.items() if v}
    if password:
        values["password_hash"] = hash_password(password)
    if row is None:
        uid = conn.execute(users.insert().values(username=username, created_at=utcnow(), active=True, **values)).inserted_primary_key[0]
    else:
        uid = row.id
        if values:
            conn.execute(users.update().where(users.c.id == uid).values(**values))
    have = set(conn.execute(select(user_roles.c.role).where(user_roles.c.user_id == uid)).scalars())
    for role in roles:
        if role not in have:
            conn.execute(user_roles.insert().values(user_id=uid, role=role))
    return get_user(conn, username)


def remove_role(conn, username, role):
    row = conn.execute(select(users.c.id).where(users.c.username == username)).first()
    if row is None:
        raise NotFound(f"No existe el usuario {username}")
    conn.execute(delete(user_roles).where(user_roles.c.user_id == row.id, user_roles.c.role == role))


_ACTIVE_USER = select(users).where(users.c.username == bindparam("username"), users.c.active.is_(True))
_ROLES = select(user_roles.c.role).where(user_roles.c.user_id == bindparam("uid"))


_EMAILS = (select(users.c.email).join(user_roles, user_roles.c.user_id == users.c.id)
           .where(user_roles.c.role == bindparam("role"), users.c.active.is_(True), users.c.email.is_not(None)))
_EMAILS_OF_DEPENDENCIA = _EMAILS.where(users.c.dependencia == bindparam("dependencia"))


def get_user(conn, username):
    row = conn.execute(_ACTIVE_USER, {"username": username}).first()
    if row is None:
        return None
    roles = conn.execute(_ROLES, {"uid": row.id}).scalars()
    return User(row.username, frozenset(roles), row.dependencia, row.nombre, row.email)


def authenticate(conn, username, password):
    row = conn.execute(select(users).where(users.c.username == username, users.c.active.is_(True))).first()
    if row is None or not row.password_hash or not check_password(row.password_hash, password):
        return None
    return get_user(conn, username)


def emails_for(conn, role, dependencia=None):
    """Addresses of active users holding `role` (of one dependencia if given)."""
    if dependencia is None:
        rows = conn.execute(_EMAILS, {"role": role})
    else:
        rows = conn.execute(_EMAILS_OF_DEPENDENCIA, {"role": role, "dependencia": dependencia})
    return sorted(set(rows.scalars()))


def list_users(conn):
    out = []
    for row in conn.execute(select(users).order_by(users.c.username)):
        roles = sorted(conn.execute(select(user_roles.c.role).where(user_roles.c.user_id == row.id)).scalars())
        out.append({"username": row.username, "nombre": row.nombre, "email": row.email,
                    "dependencia": row.dependencia, "roles": roles, "active": row.active})
    return out
