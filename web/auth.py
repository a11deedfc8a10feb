"""Sign in and out. Users and passwords live in the engine (`engine.authenticate`)."""
from flask import Blueprint, flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from .common import motor, safe_next

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Inicie sesión para continuar."
login_manager.login_message_category = "info"


class WebUser(UserMixin):
    """Flask-Login's view of a motor.users.User (roles and dependencia included)."""

    def __init__(self, user):
        self.user = user

    def get_id(self):
        return self.user.username

    @property
    def nombre(self):
        return self.user.nombre or self.user.username


@login_manager.user_loader
def load_user(username):
    user = motor().user(username)  # None when deleted or deactivated: signed out
    return WebUser(user) if user is not None else None


@login_manager.unauthorized_handler
def unauthorized():
    if request.path.startswith("/api/"):
        return jsonify(error="Inicie sesión para usar la API"), 401
    flash(login_manager.login_message, "info")
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=safe_next(target)))


@bp.route("/login", methods=("GET", "POST"))
def login():
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_url)
    error, username = None, ""
    if request.method == "POST":
        username = (request.form.get("usuario") or "").strip()
        password = request.form.get("clave") or ""
        user = motor().authenticate(username, password) if username and password else None
        if user is None:
            error = "Usuario o contraseña incorrectos."
        else:
            session.clear()  # nothing from before the sign-in survives it
            login_user(WebUser(user))
            return redirect(next_url)
    status = 401 if error else 200
    return render_template("auth/login.html", error=error, usuario=username, next=next_url), status


@bp.route("/logout", methods=("POST",))
def logout():
    logout_user()
    session.clear()
    flash("Sesión cerrada.", "info")
    return redirect(url_for("auth.login"))
