"""`motor` command line. Exit codes: 0 ok, 1 error, 2 usage, 3 invalid data,
4 not allowed, 5 conflict."""
import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path

from . import audit, export as export_mod, indicators as indicators_mod
from .config import PROJECT_ROOT, Config
from .engine import SYSTEM, Engine
from .errors import Conflict, InvalidData, InvalidDiagram, MotorError, NotAllowed, NotFound

EXIT = {InvalidData: 3, NotAllowed: 4, Conflict: 5}


def build_parser():
    p = argparse.ArgumentParser(prog="motor", description="Motor de flujo de trabajo PSDT-05 / PSDT-07")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="crea o actualiza la base de datos")
    v = sub.add_parser("validate", help="valida diagramas BPMN")
    v.add_argument("files", nargs="+")
    d = sub.add_parser("deploy", help="valida y despliega diagramas (por omisión procesos/)")
    d.add_argument("paths", nargs="*")
    d.add_argument("--json", action="store_true")
    d.add_argument("--user", default=None, help="analista que despliega (por omisión, el sistema)")
    u = sub.add_parser("users", help="administra usuarios")
    usub = u.add_subparsers(dest="users_command", required=True)
    ua = usub.add_parser("add")
    ua.add_argument("name")
    ua.add_argument("--role", action="append", required=True)
    ua.add_argument("--dependencia")
    ua.add_argument("--email")
    ua.add_argument("--nombre")
    ua.add_argument("--password-stdin", action="store_true")
    usub.add_parser("list").add_argument("--json", action="store_true")
    s = sub.add_parser("start", help="inicia una instancia")
    s.add_argument("process_id")
    s.add_argument("--user", required=True)
    s.add_argument("--data", default="{}")
    t = sub.add_parser("tasks", help="tareas pendientes")
    t.add_argument("--user")
    t.add_argument("--instance", type=int)
    t.add_argument("--json", action="store_true", required=True)
    c = sub.add_parser("complete", help="completa una tarea de usuario")
    c.add_argument("task_id")
    c.add_argument("--user", required=True)
    c.add_argument("--data", default="{}")
    w = sub.add_parser("work", help="ejecuta tareas de servicio, temporizadores y correo")
    w.add_argument("--once", action="store_true")
    w.add_argument("--poll", type=float, default=1.0)
    sh = sub.add_parser("show", help="estado de una instancia")
    sh.add_argument("instance", type=int)
    sh.add_argument("--json", action="store_true", required=True)
    h = sub.add_parser("history", help="eventos de una instancia")
    h.add_argument("instance", type=int)
    h.add_argument("--json", action="store_true", required=True)
    i = sub.add_parser("incidents", help="incidentes abiertos")
    i.add_argument("--json", action="store_true")
    r = sub.add_parser("retry", help="reintenta un incidente")
    r.add_argument("job_id")
    vs = sub.add_parser("versions", help="versiones desplegadas de un proceso")
    vs.add_argument("process_id")
    vs.add_argument("--json", action="store_true")
    df = sub.add_parser("diff", help="diferencias entre dos versiones de un proceso")
    df.add_argument("process_id")
    df.add_argument("from_version", type=int)
    df.add_argument("to_version", type=int)
    df.add_argument("--json", action="store_true")
    m = sub.add_parser("migrate", help="migra instancias en curso a otra versión (exit 5 si alguna no se puede)")
    m.add_argument("instances", nargs="+", type=int)
    m.add_argument("--to-version", type=int, required=True)
    m.add_argument("--preview", action="store_true", help="solo muestra qué cambiaría")
    m.add_argument("--json", action="store_true")
    m.add_argument("--user", default=None, help="analista que migra (por omisión, el sistema)")
    _audit_parsers(sub)
    return p


def main(argv=None, engine=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    engine = engine or Engine(Config.from_env())
    try:
        return COMMANDS[args.command](engine, args) or 0
    except InvalidData as exc:
        _err(exc.message)
        for field, msg in exc.fields.items():
            _err(f"  {field}: {msg}")
        return 3
    except InvalidDiagram as exc:
        for problem in exc.problems:
            _err(str(problem))
        return 1
    except (NotAllowed, Conflict) as exc:
        _err(exc.message)
        return EXIT[type(exc)]
    except (NotFound, MotorError) as exc:
        _err(exc.message)
        return 1
    except json.JSONDecodeError as exc:
        _err(f"--data no es JSON válido: {exc}")
        return 2


def _err(text):
    print(text, file=sys.stderr)


def _out(obj):
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _user(engine, name):
    if name is None:
        return SYSTEM
    user = engine.user(name)
    if user is None:
        raise NotFound(f"No existe el usuario {name}")
    return user


def _data(text):
    data = json.loads(text)
    if not isinstance(data, dict):
        raise json.JSONDecodeError("se esperaba un objeto JSON", text, 0)
    return data


def _read_files(paths):
    files = []
    for p in [Path(x) for x in paths] or [PROJECT_ROOT / "procesos"]:
        targets = sorted(p.glob("*.bpmn")) if p.is_dir() else [p]
        for f in targets:
            files.append((str(f.relative_to(PROJECT_ROOT)) if f.is_absolute() and f.is_relative_to(PROJECT_ROOT) else str(f), f.read_bytes()))
    if not files:
        raise MotorError("No se encontraron archivos .bpmn")
    return files


def cmd_init(engine, args):
    engine.init()
    print("base de datos lista")


def cmd_validate(engine, args):
    engine.init()
    problems = engine.validate(_read_files(args.files))
    for p in problems:
        print(p)
    return 1 if problems else 0


def cmd_deploy(engine, args):
    engine.init()
    results = engine.deploy(_user(engine, args.user), _read_files(args.paths))
    if args.json:
        _out(results)
    else:
        for r in results:
            state = "nueva versión" if r["created"] else "sin cambios"
            print(f"{r['process_id']} v{r['version']} {r['hash'][:12]} ({state})")


def cmd_users(engine, args):
    if args.users_command == "list":
        users = engine.users(SYSTEM)
        _out(users) if args.json else [print(u["username"], ",".join(u["roles"]), u["dependencia"] or "") for u in users]
        return 0
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    user = engine.add_user(SYSTEM, args.name, args.role, args.dependencia, password, args.nombre, args.email)
    print(f"{user.username}: {', '.join(sorted(user.roles))}")


def cmd_start(engine, args):
    print(engine.start(_user(engine, args.user), args.process_id, _data(args.data)))


def cmd_tasks(engine, args):
    _out(engine.tasks(_user(engine, args.user), instance_id=args.instance))


def cmd_complete(engine, args):
    engine.complete(_user(engine, args.user), args.task_id, _data(args.data))


def cmd_work(engine, args):
    worker = engine.worker()
    if args.once:
        print(f"{worker.run_once()} elementos procesados")
        return 0
    try:
        worker.run_forever(args.poll)
    except KeyboardInterrupt:
        pass


def cmd_show(engine, args):
    _out(engine.show(SYSTEM, args.instance))


def cmd_history(engine, args):
    _out(engine.history(SYSTEM, args.instance))


def cmd_incidents(engine, args):
    _out(engine.incidents(SYSTEM))


def cmd_retry(engine, args):
    engine.retry_incident(SYSTEM, args.job_id)
    print("incidente reabierto para reintento")


def cmd_versions(engine, args):
    rows = engine.version_history(SYSTEM, args.process_id)
    if args.json:
        return _out(rows)
    for r in rows:
        print(f"{r['process_id']} v{r['version']} {r['hash'][:12]} {r['deployed_at']:%Y-%m-%d %H:%M} UTC "
              f"{r['deployed_by'] or '-'}: {r['running']} en curso, {r['finished']} terminadas")


def cmd_diff(engine, args):
    result = engine.version_diff(SYSTEM, args.process_id, args.from_version, args.to_version)
    if args.json:
        return _out(result)
    print(f"{args.process_id} v{args.from_version} → v{args.to_version}")
    for item in result["added"]:
        print(f"+ {item['id']} ({item['type_name']}) «{item['name'] or ''}»")
    for item in result["removed"]:
        print(f"- {item['id']} ({item['type_name']}) «{item['name'] or ''}»")
    for item in result["changed"]:
        print(f"~ {item['id']} ({item['type_name']}) «{item['name'] or ''}»")
        for change in item["changes"]:
            print(f"    {change['text']}")
    if not (result["added"] or result["removed"] or result["changed"]):
        print("sin diferencias en elementos, formularios, roles ni tópicos")


def cmd_migrate(engine, args):
    user = _user(engine, args.user)
    run = engine.migration_preview if args.preview else engine.migrate
    results = run(user, args.instances, args.to_version)
    if args.json:
        _out(results)
    else:
        for r in results:
            where = f"{r.get('process_id', '')} v{r.get('from_version', '?')} → v{r['to_version']}".strip()
            state = ("migrada" if r.get("migrated") else "se puede migrar") if r["ok"] else "no se puede migrar"
            print(f"instancia {r['instance']} ({where}): {state}")
            for reason in r["reasons"]:
                print(f"  - {reason}")
            for change in r.get("changes", []) if r["ok"] else []:
                print(f"  * {change}")
    return 0 if all(r["ok"] for r in results) else 5


# -- audit, replay, exports and indicators (docs/auditoria.md) -----------------
def _audit_parsers(sub):
    a = sub.add_parser("audit", help="verifica la cadena de hashes del historial")
    asub = a.add_subparsers(dest="audit_command", required=True)
    av = asub.add_parser("verify", help="recalcula las cadenas (exit 1 si algún evento no coincide)")
    av.add_argument("--instance", type=int)
    av.add_argument("--head", help="archivo de «motor audit head --json» guardado fuera de la base")
    av.add_argument("--json", action="store_true")
    ah = asub.add_parser("head", help="cabezas actuales de las cadenas, para guardarlas fuera de la base")
    ah.add_argument("--instance", type=int)
    ah.add_argument("--json", action="store_true", required=True)
    rp = sub.add_parser("replay", help="reproduce una instancia desde su historial")
    rp.add_argument("instance", type=int)
    mode = rp.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to-step", type=int, help="estado después del evento K")
    mode.add_argument("--verify", action="store_true", help="re-ejecuta y compara (exit 1 si diverge)")
    rp.add_argument("--json", action="store_true")
    ex = sub.add_parser("export", help="exporta el historial en XES (IEEE 1849-2016) o CSV")
    ex.add_argument("format", choices=sorted(export_mod.FORMATS))
    ex.add_argument("file", help="archivo de salida («-» para la salida estándar)")
    for name, kind in (("instance", int), ("folio", str), ("dependencia", str), ("desde", str), ("hasta", str),
                       ("estado", str), ("version", int)):
        ex.add_argument(f"--{name}", type=kind)
    ind = sub.add_parser("indicators", help="indicador de la sección 9 y complementarios, por trimestre")
    ind.add_argument("--anio", type=int)
    ind.add_argument("--desde", type=date.fromisoformat, help="AAAA-MM-DD (se amplía al trimestre)")
    ind.add_argument("--hasta", type=date.fromisoformat, help="AAAA-MM-DD (se amplía al trimestre)")
    ind.add_argument("--dependencia")
    out = ind.add_mutually_exclusive_group(required=True)
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", metavar="FILE")


def cmd_audit(engine, args):
    if args.audit_command == "head":
        return _out(engine.audit_heads(SYSTEM, args.instance))
    heads = None
    if args.head:
        try:
            heads = audit.parse_heads(json.loads(Path(args.head).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise MotorError(f"No se pudo leer el archivo de cabezas {args.head}: {exc}") from None
    report = engine.audit_verify(SYSTEM, args.instance, heads)
    if args.json:
        _out(report.as_dict())
    elif report.ok:
        print(f"historial íntegro: {report.events} eventos de {report.instances} instancias")
    else:
        for finding in report.findings:
            print(finding)
    return 0 if report.ok else 1


def cmd_replay(engine, args):
    if args.verify:
        result = engine.replay_verify(SYSTEM, args.instance)
        _out(result.as_dict()) if args.json else print(f"instancia {args.instance}: {result}")
        return 0 if result.ok else 1
    state = engine.replay(SYSTEM, args.instance, args.to_step)
    if args.json:
        return _out(state)
    ev = state["event"]
    print(f"instancia {args.instance}, paso {state['step']} de {state['total']}: "
          + (f"{ev['type']} {ev['element_id'] or ''} {ev['user'] or ''} {ev['at']}" if ev else "inicio"))
    for item in state["completed"]:
        print(f"  completado {item['process_id']}/{item['element_id']} ×{item['count']}")
    for item in state["active"]:
        print(f"  activo     {item['process_id']}/{item['element_id']} ({item['state']})")
    print(f"  orden de servicio: {state['orden']['folio'] or '—'} {state['orden']['estado'] or ''}")


def cmd_export(engine, args):
    filters = {k: getattr(args, k) for k in ("instance", "folio", "dependencia", "desde", "hasta", "estado", "version")}
    chunks = engine.export(SYSTEM, args.format, filters)
    if args.file == "-":
        for chunk in chunks:
            sys.stdout.write(chunk)
        return 0
    size = 0
    with open(args.file, "w", encoding="utf-8", newline="") as fh:
        for chunk in chunks:
            size += fh.write(chunk)
    print(f"{args.file}: {size} caracteres")


def cmd_indicators(engine, args):
    result = engine.indicators(SYSTEM, args.anio, args.desde, args.hasta, args.dependencia)
    if args.json:
        return _out(result)
    with open(args.csv, "w", encoding="utf-8", newline="") as fh:
        fh.write(indicators_mod.as_csv(result))
    print(f"{args.csv}: {len(result['trimestres'])} trimestres")


COMMANDS = {"init": cmd_init, "validate": cmd_validate, "deploy": cmd_deploy, "users": cmd_users,
            "start": cmd_start, "tasks": cmd_tasks, "complete": cmd_complete, "work": cmd_work,
            "show": cmd_show, "history": cmd_history, "incidents": cmd_incidents, "retry": cmd_retry,
            "versions": cmd_versions, "diff": cmd_diff, "migrate": cmd_migrate}

COMMANDS.update({"audit": cmd_audit, "replay": cmd_replay, "export": cmd_export, "indicators": cmd_indicators})

if __name__ == "__main__":
    sys.exit(main())
