"""Invalid form data gets one Spanish message per field and changes nothing."""
import pytest
from sqlalchemy import func, select

from motor.db import events, instances
from motor.errors import InvalidData, NotAllowed


def _snapshot(engine, iid):
    with engine.db.read() as conn:
        version = conn.execute(select(instances.c.lock_version).where(instances.c.id == iid)).scalar()
        count = conn.execute(select(func.count()).select_from(events).where(events.c.instance_id == iid)).scalar()
    return version, count


INVALID = {
    "missing_required": ({"nombre_servicio": "  "}, {"nombre_servicio": "Este campo es obligatorio"}),
    "too_long": ({"nombre_servicio": "x" * 151}, {"nombre_servicio": "Máximo 150 caracteres (tiene 151)"}),
    "bad_url": ({"ubicacion": "javascript:alert(1)"},
                {"ubicacion": "Escriba una dirección web válida que inicie con http:// o https://"}),
    "wrong_type": ({"observaciones_mesa": {"a": 1}}, {"observaciones_mesa": "Escriba un texto"}),
    "unknown_field": ({"folio": "OS-1999-00001"}, {"folio": "Campo desconocido en este formulario"}),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_task_data_is_refused_field_by_field_and_nothing_changes(driver, engine, case):
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    before = _snapshot(engine, iid)
    data, expected = INVALID[case]
    with pytest.raises(InvalidData) as info:
        engine.complete(driver.user("mesa"), task["id"], data)
    assert info.value.fields == expected
    assert _snapshot(engine, iid) == before
    assert driver.pending(iid) == ["Task_2_Registra"]


def test_boolean_field_accepts_only_yes_or_no(driver, engine):
    iid = driver.start()
    driver.through_publication(iid)
    task = driver.task(iid, "mesa", "Task_5_1_Confirma")
    for bad in ("quizá", 3, None):
        with pytest.raises(InvalidData) as info:
            engine.complete(driver.user("mesa"), task["id"], {"satisfecho": bad})
        assert "satisfecho" in info.value.fields
    engine.complete(driver.user("mesa"), task["id"], {"satisfecho": "sí"})
    assert driver.pending(iid) == ["Task_6_Documenta"]


def test_readonly_field_is_shown_but_never_taken_from_the_user(driver, engine):
    iid = driver.start()
    driver.through_publication(iid)
    driver.complete(iid, "sol", "Task_5_1_Confirma", satisfecho=True)
    task = engine.task(driver.user("mesa"), driver.task(iid, "mesa", "Task_6_Documenta")["id"])
    field = next(f for f in task["form"] if f["id"] == "observaciones_publicacion")
    assert field["readonly"] and field["value"] == "Publicado en la sección Salud"
    engine.complete(driver.user("mesa"), task["id"], {"observaciones_publicacion": "alterado"})
    assert driver.show(iid)["data"].get("observaciones_publicacion") == "Publicado en la sección Salud"


def test_start_data_is_validated_and_a_solicitante_only_asks_for_its_dependencia(driver, engine):
    with pytest.raises(InvalidData) as info:
        engine.start(driver.user("sol"), "PSDT05", {"nombre_servicio": "", "ubicacion": "ftp://x", "canal": "fax"})
    assert info.value.fields == {
        "nombre_servicio": "Este campo es obligatorio",
        "ubicacion": "Escriba una dirección web válida que inicie con http:// o https://",
        "canal": "Seleccione una de las opciones: web, telefono, correo, oficio"}
    with pytest.raises(NotAllowed):
        driver.start("sol", dependencia="Secretaría de Educación")
    with pytest.raises(NotAllowed):
        driver.start("ge")
    with pytest.raises(NotAllowed):
        engine.start(driver.user("mesa"), "PSDT07", {})


def test_roles_are_checked_on_every_engine_call(driver, engine):
    iid = driver.start()
    task = driver.task(iid, "mesa", "Task_2_Registra")
    for name in ("sol", "ge", "director", "auditor"):
        with pytest.raises(NotAllowed):
            engine.complete(driver.user(name), task["id"], {})
        with pytest.raises(NotAllowed):
            engine.claim(driver.user(name), task["id"])
    with pytest.raises(NotAllowed):
        engine.show(driver.user("sol_otra"), iid)
    with pytest.raises(NotAllowed):
        engine.history(driver.user("sol_otra"), iid)
    assert engine.show(driver.user("sol"), iid)["id"] == iid
    assert engine.show(driver.user("auditor"), iid)["id"] == iid
    for name in ("sol", "mesa", "ge", "director", "auditor"):
        with pytest.raises(NotAllowed):
            engine.incidents(driver.user(name))
        with pytest.raises(NotAllowed):
            engine.retry_incident(driver.user(name), task["id"])
