"""The modeler round trip: bpmn-moddle with the Camunda 7 extension (what
Camunda Modeler and the browser modeler save) imports and re-exports every
file in procesos/. The re-exported XML must lose nothing (camunda: extensions,
lanes, diagram shapes), still validate, deploy as a new version and run the
same paths, event for event, as the original. The files in procesos/ are kept
in the modeler's format, so an unchanged save is byte for byte the same; an
edited save (a renamed task) is what gets deployed and run."""
import pytest

from motor.config import PROJECT_ROOT
from motor.diff import diff_xml
from motor.engine import SYSTEM
from motor.handlers import default_registry
from motor.validation import validate
from motor.xmlparse import parse_xml

from bpmn_edit import rename
from test_diagrams import _run_moddle_check, _signature

FILES = sorted((PROJECT_ROOT / "procesos").glob("*.bpmn"))
PROCESS_OF = {"psdt05.bpmn": "PSDT05", "psdt07.bpmn": "PSDT07"}


# What an analyst changes in the modeler before saving (ids and paths stay).
EDITS = {"psdt05.bpmn": ("Task_4_Notifica", "4. Notifica la publicación"),
         "psdt07.bpmn": ("Task_A1_Detecta", "Detecta la causa de que no se vea el enlace")}


def _round_trip(tmp_path, sources):
    """Run bpmn-moddle on {name: xml}; return {name: (xml in, xml out)}."""
    src, out = tmp_path / "entrada", tmp_path / "salida"
    src.mkdir()
    for name, text in sources.items():
        (src / name).write_text(text, encoding="utf-8")
    result = _run_moddle_check("--roundtrip", str(out), *sorted(str(src / n) for n in sources))
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: (text, (out / name).read_text(encoding="utf-8")) for name, text in sources.items()}


@pytest.fixture
def pristine(tmp_path):
    return _round_trip(tmp_path, {p.name: p.read_text(encoding="utf-8") for p in FILES})


@pytest.fixture
def edited(tmp_path):
    sources = {p.name: rename(p.read_text(encoding="utf-8"), *EDITS[p.name]) for p in FILES}
    return _round_trip(tmp_path, sources)


def test_every_file_of_procesos_is_covered():
    assert sorted(PROCESS_OF) == sorted(EDITS) == [p.name for p in FILES]


@pytest.mark.parametrize("variant", ["pristine", "edited"])
def test_the_re_export_keeps_every_element_extension_lane_and_shape(variant, request):
    files = request.getfixturevalue(variant)
    for name, (before_text, after_text) in files.items():
        changes = diff_xml(before_text, after_text, PROCESS_OF[name])
        assert changes["summary"] == {"added": 0, "removed": 0, "changed": 0}, changes
        before = _signature(parse_xml(before_text.encode()).getroot())
        after = _signature(parse_xml(after_text.encode()).getroot())
        for label, old, new in zip(["ids", "atributos camunda", "elementos camunda", "DI", "carriles"], before, after):
            assert not (old - new), f"{name}: la re-exportación pierde {label}: {sorted(old - new)[:5]}"
    found, _ = validate([(f"procesos/{name}", out.encode()) for name, (_, out) in sorted(files.items())],
                        default_registry().topics())
    assert found == []


def test_saving_unchanged_files_in_the_modeler_creates_no_new_version(engine, pristine):
    # procesos/ is kept in the modeler's own format: a save without changes is byte for byte the same.
    assert all(before == after for before, after in pristine.values())
    again = engine.deploy(SYSTEM, [(f"procesos/{n}", out.encode()) for n, (_, out) in sorted(pristine.items())])
    assert [(r["version"], r["created"]) for r in again] == [(1, False), (1, False)]


def _happy(d, iid):
    d.through_publication(iid, nombre=d.nombre)
    d.close_satisfied(iid, comentarios_usuario="Funciona", observaciones_cierre="Sin pendientes")


def _rework_and_annex_1(d, iid):
    d.complete(iid, "mesa", "Task_2_Registra")
    d.work(iid)
    d.complete(iid, "ge", "Task_3_Publica", nombre_portal=d.nombre)  # the broken location: Annex 1
    d.work(iid)
    d.complete(iid, "director", "Task_A1_Detecta", causa_no_conformidad="Servidor caído")
    d.complete(iid, "director", "Task_A1_Subsana", accion_correctiva="Liga alterna",
               ubicacion_portal=d.portal.service_url("citas"))
    d.work(iid)
    d.complete(iid, "ge", "Task_4_Notifica")
    d.work(iid)
    d.complete(iid, "mesa", "Task_5_1_Confirma", satisfecho=False, comentarios_usuario="No abre")
    d.complete(iid, "mesa", "Task_7_Informa")
    d.work(iid)
    d.complete(iid, "ge", "Task_8_Corrige", correccion_realizada="Corregido")
    d.publish(iid, nombre_portal=d.nombre, ubicacion_portal=d.portal.service_url("citas"))
    d.close_satisfied(iid)


def _trail(d, iid):
    return [(e["type"], e["process_id"], e["element_id"]) for e in d.history(iid)]


def test_an_edited_re_export_deploys_and_runs_the_same_paths(driver, engine, edited):
    d = driver
    d.portal.services["caido"] = 503
    runs = {}
    for label in ("original", "reexportado"):
        for path, ubicacion in ((_happy, "citas"), (_rework_and_annex_1, "caido")):
            d.nombre = f"{path.__name__} ({label})"
            iid = d.start(nombre_servicio=d.nombre, ubicacion=d.portal.service_url(ubicacion))
            path(d, iid)
            assert d.show(iid)["status"] == "completada", d.pending(iid)
            runs[(label, path.__name__)] = (iid, _trail(d, iid))
        if label == "original":
            deployed = engine.deploy(SYSTEM, [(f"procesos/{n}", out.encode()) for n, (_, out) in sorted(edited.items())])
            assert [(r["process_id"], r["version"], r["created"]) for r in deployed] == [
                ("PSDT05", 2, True), ("PSDT07", 2, True)]
    for name in ("_happy", "_rework_and_annex_1"):
        (old, old_trail), (new, new_trail) = runs[("original", name)], runs[("reexportado", name)]
        assert (d.show(old)["version"], d.show(new)["version"]) == (1, 2)
        assert engine.process_xml(SYSTEM, new, "PSDT07")["version"] == 2
        assert new_trail == old_trail
    assert ("call_activity_entered", "PSDT05", "Call_3_3_Monitoreo") in runs[("reexportado", "_happy")][1]
    assert ("service_task_executed", "PSDT07", "Task_A1_Registra") in runs[("reexportado", "_rework_and_annex_1")][1]
