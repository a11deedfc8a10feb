"""Auditor pages (/auditoria: search, replay step by step, integrity,
downloads) and the Director's indicators (/indicadores). Every route is a
GET and only reads: the engine checks the roles (auditor, director)."""
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context
from flask_login import login_required

from motor.errors import InvalidData
from motor.export import MEDIA
from motor.indicators import as_csv

from .common import actor, motor, page_number

bp = Blueprint("auditoria", __name__)

FILTROS = ("folio", "dependencia", "desde", "hasta", "estado", "version")
ROOT_PROCESS = "PSDT05"


@bp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def _zone():
    return current_app.config.get("WEB_TIMEZONE", "America/Mazatlan")


def _filters():
    return {k: (request.args.get(k) or "").strip() for k in FILTROS}


@bp.route("/auditoria")
@login_required
def buscar():
    eng, user = motor(), actor()
    filtros, errores, res = _filters(), {}, None
    pagina, size = page_number(), current_app.config["WEB_PAGE_SIZE"]
    try:
        res = eng.audit_search(user, filtros, size, (pagina - 1) * size, zone=_zone())
    except InvalidData as exc:
        errores = exc.fields
    total_paginas = max(1, -(-res["total"] // size)) if res else 1
    activos = {k: v for k, v in filtros.items() if v}
    return render_template("auditoria/buscar.html", res=res, filtros=filtros, activos=activos, errores=errores,
                           pagina=pagina, total_paginas=total_paginas, dependencias=eng.dependencias(user),
                           versiones=[v["version"] for v in eng.versions(user, ROOT_PROCESS)]), 400 if errores else 200


@bp.route("/auditoria/exportar.<formato>")
@login_required
def exportar(formato):
    """The history of the instances found (or one: ?instance=ID), streamed."""
    args = _filters()
    if request.args.get("instance"):
        args["instance"] = request.args["instance"]
    chunks = motor().export(actor(), formato, args, zone=_zone())  # refuses before anything is streamed
    media, ext = MEDIA[formato]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"historial-{args['instance']}-{stamp}.{ext}" if args.get("instance") else f"historial-{stamp}.{ext}"
    return Response(stream_with_context(chunks), content_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/auditoria/instancias/<int:instance_id>")
@login_required
def reproducir(instance_id):
    """The instance as it was after event ?paso=K (the last one by default);
    ?parcial=1 gives only the step's panels, for replay.js."""
    eng, user = motor(), actor()
    paso = request.args.get("paso", type=int)
    state = eng.replay(user, instance_id, 10 ** 9 if paso is None else paso, with_xml=True)
    contexto = {"st": state, "inst": state["instance"], "datos": _data_diff(state), "paso_json": _step_json(state),
                "detalle": _event_detail(state["event"])}
    if request.args.get("parcial"):
        return render_template("auditoria/_paso.html", **contexto)
    return render_template("auditoria/reproducir.html", integridad=eng.audit_verify(user, instance_id),
                           reejecucion=eng.replay_verify(user, instance_id),
                           diagramas=[{"process_id": d["process_id"], "version": d["version"], "xml": d["xml"]}
                                      for d in state["diagrams"]], **contexto)


@bp.route("/indicadores")
@login_required
def indicadores():
    eng, user = motor(), actor()
    anio, dependencia = _year(), (request.args.get("dependencia") or "").strip() or None
    result = eng.indicators(user, anio=anio, dependencia=dependencia, zone=_zone())
    grafica = {"etiquetas": [r["etiqueta"] for r in result["trimestres"]],
               "recibidas": [r["recibidas"] for r in result["trimestres"]],
               "publicadas": [r["publicadas"] for r in result["trimestres"]],
               "indicador": [r["indicador"] for r in result["trimestres"]]}
    actual = datetime.now(timezone.utc).year
    return render_template("auditoria/indicadores.html", res=result, anio=anio, dependencia=dependencia,
                           dependencias=eng.dependencias(user), anios=list(range(actual, actual - 6, -1)),
                           grafica=grafica)


@bp.route("/indicadores.csv")
@login_required
def indicadores_csv():
    anio, dependencia = _year(), (request.args.get("dependencia") or "").strip() or None
    result = motor().indicators(actor(), anio=anio, dependencia=dependencia, zone=_zone())
    return Response(as_csv(result), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="indicadores-{anio}.csv"'})


def _year():
    anio = request.args.get("anio", type=int)
    if anio is None:
        return datetime.now(timezone.utc).year
    if not 2000 <= anio <= 2100:
        raise InvalidData({"anio": "Elija un año entre 2000 y 2100"})
    return anio


# -- what the replay page shows -------------------------------------------------
def _step_json(state):
    """Markers per process for replay.js: completed elements (with visit
    counts), active ones, the element of this step, the flows taken."""
    ev = state["event"] or {}
    out = {"paso": state["step"], "total": state["total"], "versiones": state["versions"], "procesos": {}}
    for pid in state["versions"]:
        out["procesos"][pid] = {
            "completed": [c["element_id"] for c in state["completed"] if c["process_id"] == pid],
            "visits": {c["element_id"]: c["count"] for c in state["completed"] if c["process_id"] == pid},
            "active": [a["element_id"] for a in state["active"] if a["process_id"] == pid],
            "current": ev.get("element_id") if ev.get("process_id") == pid else None,
            "flows": {f["flow_id"]: f["count"] for f in state["flows"] if f["process_id"] == pid},
        }
    return out


def _data_diff(state):
    before, after = state["data_before"], state["data"]
    return [{"clave": k, "antes": before.get(k), "despues": after.get(k), "cambio": before.get(k) != after.get(k)}
            for k in sorted(set(before) | set(after))]


def _event_detail(ev):
    """Lines that say what happened at this step, in Spanish."""
    if ev is None:
        return []
    d, kind = ev.get("data") or {}, ev["type"]
    if kind == "task_completed":
        return [f"{k}: {v}" for k, v in sorted((d.get("form") or {}).items())]
    if kind == "service_task_executed":
        lines = [f"{k}: {v}" for k, v in sorted((d.get("result") or {}).items())]
        lines += [f"(detalle) {k}: {v}" for k, v in sorted((d.get("details") or {}).items())]
        return [f"Tópico {d.get('topic')} · intento {d.get('attempt')}"] + lines
    if kind == "gateway_decision":
        return ["Continúa a: " + ", ".join(d.get("to") or [])]
    if kind == "instance_created":
        return [f"{k}: {v}" for k, v in sorted((d.get("data") or {}).items())]
    if kind == "incident":
        return [d.get("error") or ""]
    return [f"{k}: {v}" for k, v in sorted(d.items())]

