"""The public Portal de GES catalog (no sign-in). PSDT-07 reads this very page:
every published service is a plain visible <a href="ubicacion">nombre</a>."""
from itertools import groupby

from flask import Blueprint, render_template

from .common import motor

bp = Blueprint("portal", __name__, url_prefix="/portal")


@bp.route("")
def catalogo():
    entries = motor().portal_entries()  # ordered by dependencia, nombre
    grupos = [(dep, list(items)) for dep, items in groupby(entries, key=lambda e: e["dependencia"])]
    return render_template("portal/catalogo.html", grupos=grupos, total=len(entries))
