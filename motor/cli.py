"""`motor` command line. Exit codes: 0 ok, 1 error, 2 usage, 3 invalid data,
4 not allowed, 5 conflict."""
import argparse
import json
import logging
import sys
from pathlib import Path

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


COMMANDS = {"init": cmd_init, "validate": cmd_validate, "deploy": cmd_deploy, "users": cmd_users,
            "start": cmd_start, "tasks": cmd_tasks, "complete": cmd_complete, "work": cmd_work,
            "show": cmd_show, "history": cmd_history, "incidents": cmd_incidents, "retry": cmd_retry}

if __name__ == "__main__":
    sys.exit(main())
