"""PSDT-07 monitoring checks against real HTTP servers on loopback."""
import threading
import time

import pytest

from motor import checks
from motor.checks import CheckResult, check_portal, check_service
from servers import Route, closed_port, http_server

SERVICE = "https://servicios.ges.gob.mx/tramites/licencia"
NAME = "Licencia de Conducir"


def page(*links: str, head: str = "") -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head>"
            f"<body><nav><ul>{''.join(links)}</ul></nav></body></html>")


def link(text: str, href: str, attrs: str = "") -> str:
    return f"<li><a href='{href}' {attrs}>{text}</a></li>"


def portal(body, **kwargs) -> CheckResult:
    with http_server({"/portal": body}) as base:
        return check_portal(f"{base}/portal", kwargs.pop("nombre", NAME),
                            kwargs.pop("ubicacion", SERVICE), **kwargs)


@pytest.fixture(autouse=True)
def no_threads_left_behind():
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leftover, f"threads still running: {leftover}"


# ---------------------------------------------------------------- check_portal

def test_visible_link_with_name_and_destination_is_ok():
    log = []
    with http_server({"/portal": page(link("Otro", "/x"), link(NAME, SERVICE))}, log=log) as base:
        result = check_portal(f"{base}/portal", NAME, SERVICE)
    assert result.ok, result.reason
    assert result.status_code == 200
    assert "está visible en el Portal" in result.reason and NAME in result.reason
    assert log[0][2]["User-Agent"] == checks.USER_AGENT
    assert result.as_dict()["ok"] is True and result.elapsed_ms >= 0


def test_missing_link_is_not_ok_and_names_it():
    result = portal(page(link("Otro trámite", "https://otro.gob.mx/")))
    assert not result.ok
    assert result.reason == (f"No se encontró en el Portal un enlace con el nombre «{NAME}» "
                             f"hacia {SERVICE}")


def test_link_with_the_name_but_another_destination_says_where_it_points():
    result = portal(page(link(NAME, "https://viejo.ges.gob.mx/licencia")))
    assert not result.ok
    assert "el enlace apunta a https://viejo.ges.gob.mx/licencia" in result.reason


def test_link_to_the_destination_under_another_name_names_it():
    result = portal(page(link("Licencias", SERVICE)))
    assert not result.ok
    assert "con el nombre «Licencias»" in result.reason


def test_relative_href_is_resolved_against_the_page_url():
    with http_server({"/tramites/portal": page(link(NAME, "../servicios/licencia"))}) as base:
        result = check_portal(f"{base}/tramites/portal", NAME, f"{base}/servicios/licencia")
    assert result.ok, result.reason


def test_relative_href_uses_the_final_url_after_a_redirect():
    routes = {"/inicio": Route(redirect="/v2/portal"), "/v2/portal": page(link(NAME, "licencia"))}
    with http_server(routes) as base:
        result = check_portal(f"{base}/inicio", NAME, f"{base}/v2/licencia")
    assert result.ok, result.reason


def test_equivalent_urls_match():
    href = "HTTPS://Servicios.GES.gob.mx:443/tramites/licencia#inicio"
    assert portal(page(link(NAME, href))).ok
    assert checks.normalize_url("http://Example.com:80") == "http://example.com/"
    assert checks.normalize_url("http://example.com:8080/a") == "http://example.com:8080/a"


@pytest.mark.parametrize("attrs, wrapper", [
    ("hidden", "{}"),
    ("aria-hidden='true'", "{}"),
    ("style='DISPLAY: none'", "{}"),
    ("", "<div style='color:red; visibility : hidden'>{}</div>"),
    ("", "<section hidden><div>{}</div></section>"),
])
def test_hidden_link_is_not_ok(attrs, wrapper):
    result = portal(page(wrapper.format(link(NAME, SERVICE, attrs))))
    assert not result.ok
    assert "está oculto" in result.reason


def test_hidden_copy_does_not_hide_a_visible_one():
    result = portal(page(link(NAME, SERVICE, "hidden"), link(NAME, SERVICE)))
    assert result.ok, result.reason


@pytest.mark.parametrize("text, nombre", [
    ("  LICENCIA   de\n conducir ", NAME),
    ("Trámite de Áreas Naturales", "trámite de áreas naturales"),
    ("Trámite", "Tra\u0301mite"),                # decomposed accent (NFD) vs composed
    ("Inscripción&nbsp;al Padrón", "inscripción al padrón"),
    ("<span>Pago</span> <b>de Tenencia</b>", "Pago de Tenencia"),
])
def test_names_match_ignoring_case_spacing_and_accent_encoding(text, nombre):
    assert portal(page(link(text, SERVICE)), nombre=nombre).ok


def test_accented_name_matches_when_charset_is_only_in_the_http_header():
    body = f"<html><body><a href='{SERVICE}'>Constancia de Posesión</a></body></html>"
    route = Route(body=body.encode("utf-8"), headers={"Content-Type": "text/html; charset=utf-8"})
    assert portal(route, nombre="Constancia de Posesión").ok


def test_latin1_page_declared_in_meta_matches():
    body = (f"<html><head><meta charset='iso-8859-1'></head><body>"
            f"<a href='{SERVICE}'>Constancia de Posesión</a></body></html>").encode("latin-1")
    assert portal(Route(body=body, headers={"Content-Type": "text/html"}),
                  nombre="Constancia de Posesión").ok


def test_portal_error_status_is_not_ok_with_the_status():
    result = portal(Route(status=500, body="error"))
    assert not result.ok
    assert result.status_code == 500
    assert result.reason == "El Portal respondió 500"


def test_unreachable_portal_reports_the_connection_failure():
    url = f"http://127.0.0.1:{closed_port()}/portal"
    result = check_portal(url, NAME, SERVICE, timeout=2)
    assert not result.ok
    assert result.status_code is None
    assert "No se pudo conectar" in result.reason and url in result.reason


def test_slow_portal_times_out():
    started = time.monotonic()
    result = portal(Route(body=page(link(NAME, SERVICE)), delay=2), timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert not result.ok
    assert result.reason.startswith("Tiempo de espera agotado (0.5 s)")


def test_deeply_nested_html_does_not_crash():
    body = "<div>" * 100_000 + link(NAME, SERVICE) + "</div>" * 100_000
    result = portal(body)
    assert isinstance(result, CheckResult)
    assert result.status_code == 200


def test_doctype_with_entities_is_not_expanded():
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 9))
    body = (f'<!DOCTYPE html [<!ENTITY l0 "lol">{lol}'
            f'<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            f"<html><body><p>&l8;</p><a href='{SERVICE}'>&xxe;</a></body></html>")
    result = portal(body, nombre="root:x:0:0")
    assert not result.ok
    assert "root" not in result.reason.replace("«root:x:0:0»", "")


def test_malformed_hrefs_do_not_crash():
    body = page(link("Roto", "http://[bad"), link("Puerto", "http://a:99999/"),
                link(NAME, SERVICE), head="<base href='http://[otro'>")
    assert portal(body).ok


def test_oversized_page_is_rejected():
    huge = Route(body=b"<html><body>" + b"x" * (5 * 1024 * 1024 + 10))
    result = portal(huge)
    assert not result.ok
    assert "excede el tamaño máximo" in result.reason


def test_garbage_body_does_not_crash():
    result = portal(Route(body=b"\x00\xff\xfe" * 1000, headers={"Content-Type": "text/html"}))
    assert not result.ok


# ---------------------------------------------------------------- check_service

def test_service_answering_200_is_ok():
    with http_server({"/": "hola"}) as base:
        result = check_service(base)
    assert result.ok
    assert result.status_code == 200
    assert result.reason == "El servicio respondió 200"


def test_service_answering_404_is_not_ok():
    with http_server({}) as base:
        result = check_service(f"{base}/no-existe")
    assert not result.ok
    assert result.status_code == 404
    assert "404" in result.reason


def test_redirect_chain_ending_in_200_is_ok():
    routes = {"/a": Route(redirect="/b"), "/b": Route(status=301, redirect="/c"),
              "/c": Route(status=307, redirect="/ok"), "/ok": "listo"}
    with http_server(routes) as base:
        result = check_service(f"{base}/a")
    assert result.ok, result.reason
    assert result.status_code == 200
    assert f"{base}/ok" in result.reason


def test_five_redirects_are_followed_but_six_are_too_many():
    routes = {f"/r{i}": Route(redirect=f"/r{i + 1}") for i in range(6)}
    routes["/r6"] = "fin"
    with http_server(routes) as base:
        assert check_service(f"{base}/r1").ok
        result = check_service(f"{base}/r0")
    assert not result.ok
    assert "Demasiadas redirecciones" in result.reason


def test_redirect_loop_is_not_ok():
    with http_server({"/loop": Route(redirect="/loop")}) as base:
        result = check_service(f"{base}/loop")
    assert not result.ok
    assert "Demasiadas redirecciones" in result.reason


def test_redirect_to_a_file_url_is_refused():
    with http_server({"/r": Route(redirect="file:///etc/passwd")}) as base:
        result = check_service(f"{base}/r")
    assert not result.ok
    assert result.status_code == 302
    assert "redirige a file:///etc/passwd, que no es una dirección http o https" in result.reason


@pytest.mark.parametrize("scheme", ["file", "ftp", "gopher"])
def test_non_http_schemes_are_rejected_without_any_request(scheme):
    log = []
    with http_server({"/": "hola"}, log=log) as base:
        url = base.replace("http", scheme, 1) + "/"
        if scheme == "file":
            url = "file:///etc/passwd"
        results = [check_service(url), check_portal(url, NAME, SERVICE)]
    assert log == []
    for result in results:
        assert not result.ok and result.status_code is None
        assert "URL no válida" in result.reason


@pytest.mark.parametrize("url", ["", "no es una url", "http://", "http://[::1"])
def test_malformed_urls_are_rejected(url):
    result = check_service(url)
    assert not result.ok
    assert "URL no válida" in result.reason


def test_service_timeout_is_reported():
    with http_server({"/lento": Route(delay=2)}) as base:
        result = check_service(f"{base}/lento", timeout=0.5)
    assert not result.ok
    assert "Tiempo de espera agotado (0.5 s)" in result.reason


def test_unreachable_service_is_not_ok():
    result = check_service(f"http://127.0.0.1:{closed_port()}/", timeout=2)
    assert not result.ok
    assert "No se pudo conectar" in result.reason
