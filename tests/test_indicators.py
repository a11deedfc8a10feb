"""Section 9's indicator and the Director's companions, against hand-computed
figures from rows inserted directly: quarter boundaries in the state's
time zone, an empty quarter, per dependencia. SQLite and PostgreSQL."""
import csv
import io
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from test_audit import motor_cli

from motor import events as events_mod
from motor.db import instances, no_conformidades, ordenes_servicio, process_versions
from motor.engine import SYSTEM
from motor.errors import InvalidData, NotAllowed
from motor.indicators import as_csv, quarters

SALUD, SEP = "Secretaría de Salud", "Secretaría de Educación"
MZT, UTC = ZoneInfo("America/Mazatlan"), ZoneInfo("UTC")


def L(*parts):
    """A local (Sinaloa) wall-clock time as the naive UTC the database stores."""
    return datetime(*parts, tzinfo=MZT).astimezone(UTC).replace(tzinfo=None)


class Fixture:
    def __init__(self, engine):
        self.engine, self.n = engine, 0
        with engine.db.read() as conn:
            self.version_id = conn.execute(select(process_versions.c.id)
                                           .where(process_versions.c.process_id == "PSDT05")).scalars().first()

    def order(self, dep, recibida, publicada=None, cerrada=None):
        self.n += 1
        estado = "cerrada" if cerrada else "publicada" if publicada else "abierta"
        with self.engine.db.transaction() as conn:
            iid = conn.execute(instances.insert().values(
                process_id="PSDT05", version_id=self.version_id, called_versions={}, dependencia=dep, nombre_servicio="Servicio",
                status="completada" if cerrada else "en_curso", started_at=recibida, updated_at=recibida,
                state="{}", lock_version=1)).inserted_primary_key[0]
            conn.execute(ordenes_servicio.insert().values(
                folio=f"OS-X-{self.n:05d}", anio=recibida.year, numero=90000 + self.n, instance_id=iid, dependencia=dep,
                nombre_servicio="Servicio", ubicacion="https://x.gob.mx", estado=estado, fecha_recepcion=recibida,
                fecha_publicacion=publicada, fecha_cierre=cerrada))
        return iid

    def decision(self, iid, when, to, gateway="Gateway_5_2"):
        with self.engine.db.transaction() as conn:
            events_mod.append(conn, iid, [{"type": "gateway_decision", "process_id": "PSDT05", "element_id": gateway,
                                           "data": {"to": [to]}}], now=when)

    def no_conformidad(self, iid, when):
        with self.engine.db.transaction() as conn:
            conn.execute(no_conformidades.insert().values(instance_id=iid, tipo="Servicio no visible en el portal",
                                                          motivo="no se ve", detectada_en=when))


@pytest.fixture
def fx(engine):
    f = Fixture(engine)
    o1 = f.order(SALUD, L(2025, 1, 10, 9), L(2025, 1, 12, 9), L(2025, 1, 15, 9))          # 2 d, 5 d
    f.order(SALUD, L(2025, 2, 1, 9), L(2025, 2, 5, 9), L(2025, 2, 8, 9))                   # 4 d, 7 d
    o3 = f.order(SEP, L(2025, 3, 31, 23, 59, 59), L(2025, 4, 10, 23, 59, 59))              # last second of Q1: 10 d
    f.order(SEP, L(2025, 3, 1, 9))
    o5 = f.order(SALUD, L(2025, 4, 1, 0, 0, 0))                                            # first second of Q2
    o6 = f.order(SALUD, L(2025, 6, 30, 12), L(2025, 7, 1, 12))                             # 1 d
    o7 = f.order(SEP, L(2025, 12, 31, 23))
    f.order(SALUD, L(2024, 12, 31, 23, 59, 59), L(2025, 1, 2, 9))                          # other years
    f.order(SALUD, L(2026, 1, 1, 0, 0, 0))
    f.decision(o1, L(2025, 1, 14, 9), "Task_7_Informa")
    f.decision(o1, L(2025, 1, 14, 10), "Task_6_Documenta")                                # satisfied: not rework
    f.decision(o5, L(2025, 6, 1, 9), "Task_7_Informa")
    f.decision(o3, L(2025, 4, 1, 0, 0, 0), "Task_7_Informa")
    f.decision(o3, L(2025, 4, 2, 0, 0, 0), "Task_A1_Registra", gateway="Gateway_Funciona")  # other gateway
    f.no_conformidad(o3, L(2025, 3, 31, 23))
    f.no_conformidad(o6, L(2025, 7, 1, 0, 0, 1))
    f.no_conformidad(o7, L(2025, 12, 31, 23, 30))
    return f


def _by_label(rows):
    return {r["etiqueta"]: r for r in rows}


def test_the_indicator_per_quarter_matches_the_hand_computed_figures(engine, fx):
    result = engine.indicators(engine.user("director"), anio=2025)
    q = _by_label(result["trimestres"])
    assert list(q) == ["2025-T1", "2025-T2", "2025-T3", "2025-T4"]
    assert [(r["recibidas"], r["publicadas"], r["indicador"]) for r in q.values()] == [
        (4, 3, 75.0), (2, 1, 50.0), (0, 0, None), (1, 0, 0.0)]
    assert q["2025-T1"]["por_estado"] == {"abierta": 1, "publicada": 1, "cerrada": 2}
    assert q["2025-T2"]["por_estado"] == {"abierta": 1, "publicada": 1, "cerrada": 0}
    assert (q["2025-T1"]["mediana_dias_publicacion"], q["2025-T1"]["mediana_dias_cierre"]) == (4.0, 6.0)
    assert (q["2025-T2"]["mediana_dias_publicacion"], q["2025-T2"]["mediana_dias_cierre"]) == (1.0, None)
    assert q["2025-T3"]["mediana_dias_publicacion"] is None
    assert [r["reprocesos"] for r in q.values()] == [1, 2, 0, 0]
    assert [r["no_conformidades"] for r in q.values()] == [1, 0, 1, 1]
    total = result["total"]
    assert (total["recibidas"], total["publicadas"], total["indicador"]) == (7, 4, 57.1)
    assert (total["mediana_dias_publicacion"], total["mediana_dias_cierre"]) == (3.0, 6.0)
    assert (total["reprocesos"], total["no_conformidades"]) == (3, 3)


def test_per_dependencia_and_filtered_by_dependencia(engine, fx):
    result = engine.indicators(engine.user("director"), anio=2025)
    deps = {d["dependencia"]: d for d in result["por_dependencia"]}
    assert list(deps) == [SEP, SALUD]
    assert [(r["recibidas"], r["indicador"]) for r in deps[SALUD]["trimestres"]] == [
        (2, 100.0), (2, 50.0), (0, None), (0, None)]
    assert [(r["recibidas"], r["indicador"]) for r in deps[SEP]["trimestres"]] == [
        (2, 50.0), (0, None), (0, None), (1, 0.0)]
    assert deps[SALUD]["total"]["reprocesos"] == 2 and deps[SEP]["total"]["no_conformidades"] == 2
    only = engine.indicators(engine.user("director"), anio=2025, dependencia=SEP)
    assert [r["recibidas"] for r in only["trimestres"]] == [2, 0, 0, 1]
    assert [r["reprocesos"] for r in only["trimestres"]] == [0, 1, 0, 0]
    assert [d["dependencia"] for d in only["por_dependencia"]] == [SEP]


def test_quarter_boundaries_follow_the_chosen_time_zone(engine, fx):
    fx.order(SALUD, datetime(2027, 3, 31, 23, 59, 59))   # naive UTC
    fx.order(SALUD, datetime(2027, 4, 1, 0, 0, 0))
    director = engine.user("director")
    in_utc = engine.indicators(director, anio=2027, zone="UTC")["trimestres"]
    assert [r["recibidas"] for r in in_utc] == [1, 1, 0, 0]
    local = engine.indicators(director, anio=2027)["trimestres"]      # 16:59:59 and 17:00 on 31 March in Sinaloa
    assert [r["recibidas"] for r in local] == [2, 0, 0, 0]
    assert quarters(date(2025, 2, 1), date(2025, 2, 1))[0].start == datetime(2025, 1, 1, 7)


def test_a_range_spans_whole_quarters_across_years(engine, fx):
    result = engine.indicators(engine.user("director"), desde=date(2024, 11, 15), hasta=date(2026, 1, 5))
    labels = [r["etiqueta"] for r in result["trimestres"]]
    assert labels == ["2024-T4", "2025-T1", "2025-T2", "2025-T3", "2025-T4", "2026-T1"]
    assert [r["recibidas"] for r in result["trimestres"]] == [1, 4, 2, 0, 1, 1]
    with pytest.raises(InvalidData):
        engine.indicators(engine.user("director"), desde=date(2025, 2, 1), hasta=date(2025, 1, 1))


def test_csv_download_and_cli(engine, fx, tmp_path):
    result = engine.indicators(engine.user("director"), anio=2025)
    rows = list(csv.DictReader(io.StringIO(as_csv(result)[1:])))
    assert len(rows) == 4 * 3  # totals, then two dependencias
    assert rows[0] == {"ambito": "Total", "anio": "2025", "trimestre": "1", "recibidas": "4", "publicadas": "3",
                       "indicador_pct": "75.0", "abiertas": "1", "publicadas_estado": "1", "cerradas": "2",
                       "mediana_dias_publicacion": "4.0", "mediana_dias_cierre": "6.0", "reprocesos": "1",
                       "no_conformidades": "1"}
    assert rows[2]["indicador_pct"] == "" and {r["ambito"] for r in rows} == {"Total", SALUD, SEP}
    cli = motor_cli(engine, "indicators", "--anio", "2025", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["trimestres"] == result["trimestres"]
    out = tmp_path / "indicador.csv"
    assert motor_cli(engine, "indicators", "--anio", "2025", "--csv", str(out)).returncode == 0
    assert out.read_text(encoding="utf-8-sig").splitlines()[1].startswith("Total,2025,1,4,3,75.0")


def test_indicators_are_for_the_director(engine, fx):
    for name in ("sol", "mesa", "ge", "auditor"):
        with pytest.raises(NotAllowed):
            engine.indicators(engine.user(name), anio=2025)
    assert engine.indicators(SYSTEM, anio=2025)["total"]["recibidas"] == 7


def test_an_empty_database_gives_empty_quarters(engine):
    result = engine.indicators(engine.user("director"), anio=2030)
    assert [(r["recibidas"], r["indicador"]) for r in result["trimestres"]] == [(0, None)] * 4
    assert result["por_dependencia"] == [] and result["total"]["indicador"] is None
