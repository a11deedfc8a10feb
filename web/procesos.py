"""Process analysts (roles analista and admin): versions, upload and deploy,
version diff, migration of running instances, and the in-browser modeler.

Every action is one call to the engine; validation messages are the very
lines `motor validate` prints (motor.errors.Problem).
"""
import json
import re

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required
from flask_wtf.csrf import generate_csrf

from motor.errors import Conflict, InvalidData, InvalidDiagram, MotorError, NotAllowed, NotFound

from .common import actor, motor

bp = Blueprint("procesos", __name__, url_prefix="/procesos")
MAX_FILES = 10
PROCESS_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


@bp.before_request
@login_required
def _analysts_only():
    if not actor().has("analista", "admin"):
        abort(403)
    pid = (request.view_args or {}).get("process_id")
    if pid is not None and not PROCESS_ID.match(pid):
        abort(404)


@bp.after_request
def _no_store(response):
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# -- processes and upload -------------------------------------------------------
@bp.route("")
def lista():
    return render_template("procesos/lista.html", procesos=motor().processes(actor()))


@bp.route("/subir", methods=("POST",))
def subir():
    """Step 1 (files uploaded): validate and preview. Step 2 (the confirm
    form re-posts the same XML): deploy all files in one transaction."""
    files = _uploaded() if request.form.get("paso") != "desplegar" else _confirmed()
    if not files:
        flash("Elija uno o varios archivos .bpmn.", "error")
        return redirect(url_for("procesos.lista"))
    if request.form.get("paso") == "desplegar":
        try:
            results = motor().deploy(actor(), files)
        except InvalidDiagram as exc:
            return _preview(files, exc.problems, status=400)
        created = [f"{r['process_id']} versión {r['version']}" for r in results if r["created"]]
        flash(("Desplegado: " + ", ".join(created) + ".") if created else
              "Sin cambios: el contenido ya estaba desplegado; no se creó ninguna versión.", "exito")
        return redirect(url_for("procesos.lista"))
    return _preview(files)


def _preview(files, problems=None, status=200):
    result = motor().deploy_preview(actor(), files)
    problems = result["problems"] if problems is None else problems
    return render_template("procesos/subir.html", archivos=files, problemas=problems,
                           procesos=result["processes"]), (400 if problems else status)


def _uploaded():
    files = []
    for storage in request.files.getlist("archivos")[:MAX_FILES]:
        name = (storage.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        if not name:
            continue
        if not name.lower().endswith(".bpmn"):
            raise InvalidData({"archivos": f"«{name}» no es un archivo .bpmn"})
        files.append((f"procesos/{name}", storage.read()))
    return files


def _confirmed():
    names, texts = request.form.getlist("nombre"), request.form.getlist("xml")
    return [(n, t.encode("utf-8")) for n, t in zip(names[:MAX_FILES], texts) if n.startswith("procesos/")]


# -- one process ----------------------------------------------------------------
@bp.route("/<process_id>")
def detalle(process_id):
    eng, user = motor(), actor()
    versions = eng.version_history(user, process_id)
    return render_template("procesos/detalle.html", process_id=process_id, versiones=versions,
                           borrador=eng.draft(user, process_id)["draft"])


@bp.route("/<process_id>/versiones/<int:version>.bpmn")
def descargar(process_id, version):
    found = motor().version_xml(actor(), process_id, version)
    base = found["file"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return Response(found["xml"], mimetype="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{base}-v{version}.bpmn"'})


@bp.route("/<process_id>/diferencias")
def diferencias(process_id):
    versions = motor().version_history(actor(), process_id)
    numbers = [v["version"] for v in versions]
    de, a = _int_arg("de", numbers[1] if len(numbers) > 1 else numbers[0]), _int_arg("a", numbers[0])
    result = motor().version_diff(actor(), process_id, de, a)
    xml = {n: motor().version_xml(actor(), process_id, n)["xml"] for n in {de, a}}
    datos = {"antes": {"version": de, "xml": xml[de]}, "despues": {"version": a, "xml": xml[a]},
             "agregados": [e["id"] for e in result["added"]], "quitados": [e["id"] for e in result["removed"]],
             "cambiados": [e["id"] for e in result["changed"]]}
    return render_template("procesos/diferencias.html", process_id=process_id, d=result, versiones=numbers,
                           de=de, a=a, datos=datos)


def _int_arg(name, default, source=None):
    try:
        return int((source or request.args).get(name, default))
    except (TypeError, ValueError):
        abort(400)


@bp.route("/<process_id>/migrar", methods=("GET", "POST"))
def migrar(process_id):
    eng, user = motor(), actor()
    versions = [v["version"] for v in eng.version_history(user, process_id)]
    source = request.args if request.method == "GET" else request.form
    target = _int_arg("version", versions[0], source)
    results, status = None, 200
    if request.method == "POST":
        ids = [int(x) for x in request.form.getlist("instancia") if x.isdigit()]
        if not ids:
            flash("Elija al menos una instancia.", "error")
            status = 400
        elif request.form.get("accion") == "migrar":
            results = eng.migrate(user, ids, target)
            done = sum(1 for r in results if r.get("migrated"))
            flash(f"Se migraron {done} de {len(results)} instancias a la versión {target}.",
                  "exito" if done == len(results) else "error")
        else:
            results = eng.migration_preview(user, ids, target)
    return render_template("procesos/migrar.html", process_id=process_id, versiones=versions, version=target,
                           instancias=eng.running_instances(user, process_id), resultados=results,
                           elegidas={r["instance"] for r in results or []}), status


# -- the modeler ------------------------------------------------------------------
@bp.route("/<process_id>/editar")
def editar(process_id):
    found = motor().draft(actor(), process_id)
    datos = {"xml": found["xml"], "csrf": generate_csrf(), "process_id": process_id,
             "urls": {"guardar": url_for("procesos.guardar_borrador", process_id=process_id),
                      "validar": url_for("procesos.validar_borrador", process_id=process_id)}}
    return render_template("procesos/editar.html", process_id=process_id, b=found, datos=datos)


@bp.route("/<process_id>/borrador", methods=("POST",))
def guardar_borrador(process_id):
    try:
        saved = motor().save_draft(actor(), process_id, _json_xml())
    except MotorError as exc:
        return _json_error(exc)
    return jsonify({"saved_by": saved["saved_by"], "saved_at": saved["saved_at"].isoformat() + "Z",
                    "base_version": saved["base_version"]})


@bp.route("/<process_id>/validar", methods=("POST",))
def validar_borrador(process_id):
    """Validate the modeler's XML as the process file it will replace."""
    try:
        file_name = motor().draft(actor(), process_id)["file"]
        xml = _json_xml()
    except MotorError as exc:
        return _json_error(exc)
    problems = motor().validate([(file_name, xml.encode("utf-8"))])
    return jsonify({"problems": [p.as_dict() for p in problems]})


@bp.route("/<process_id>/desplegar", methods=("POST",))
def desplegar_borrador(process_id):
    try:
        results = motor().deploy_draft(actor(), process_id, allow_stale=request.form.get("aun_asi") == "si")
    except InvalidDiagram as exc:
        return render_template("procesos/problemas.html", process_id=process_id, problemas=exc.problems), 400
    except Conflict as exc:
        return render_template("procesos/desactualizado.html", process_id=process_id, mensaje=exc.message), 409
    created = [f"{r['process_id']} versión {r['version']}" for r in results if r["created"]]
    flash(("Borrador desplegado: " + ", ".join(created) + ".") if created else
          "El borrador no tenía cambios respecto de una versión ya desplegada; se descartó.", "exito")
    return redirect(url_for("procesos.detalle", process_id=process_id))


@bp.route("/<process_id>/borrador/descartar", methods=("POST",))
def descartar_borrador(process_id):
    motor().discard_draft(actor(), process_id)
    flash("Borrador descartado.", "exito")
    return redirect(url_for("procesos.detalle", process_id=process_id))


def _json_xml():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("xml"), str):
        raise InvalidData({"xml": "Se esperaba un objeto JSON con el campo xml"})
    return body["xml"]


def _json_error(exc):
    status = {InvalidData: 400, NotAllowed: 403, NotFound: 404, Conflict: 409}.get(type(exc), 422)
    body = {"error": exc.message}
    if getattr(exc, "fields", None):
        body["fields"] = exc.fields
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
