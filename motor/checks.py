"""Monitoring checks of PSDT-07: is the service listed in the Portal, does it answer.

Both checks make real HTTP requests and never raise for network problems: every
failure becomes a CheckResult with ok=False and a Spanish reason for the staff.
"""
from __future__ import annotations

import dataclasses
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from motor.xmlparse import MAX_HTML_BYTES, XmlError, parse_html

USER_AGENT = "PSDT07-Monitoreo/1.0"
DEFAULT_HEADERS = {"User-Agent": USER_AGENT}
MAX_REDIRECTS = 5
ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    url: str
    status_code: int | None
    elapsed_ms: int
    reason: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Failure(Exception):
    """A check that ended early; carries the Spanish reason and last status."""

    def __init__(self, reason: str, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


def make_client(timeout: float = 10.0) -> httpx.Client:
    """A client configured like the one the checks create for themselves."""
    # Redirects are followed by hand (see _open) so the limit holds for any client.
    return httpx.Client(headers=DEFAULT_HEADERS, timeout=timeout, follow_redirects=False)


# ---------------------------------------------------------------- public checks

def check_service(url: str, *, timeout: float = 10.0,
                  client: httpx.Client | None = None) -> CheckResult:
    """GET the service URL; ok when the final status (after redirects) is below 400."""
    def run(http: httpx.Client, deadline: float) -> tuple[bool, int, str]:
        response = _open(http, url, timeout, deadline)
        response.close()  # the body is irrelevant: only the status counts
        status, final_url = response.status_code, str(response.url)
        reason = f"El servicio respondió {status}"
        if normalize_url(final_url) != normalize_url(url):
            reason += f" (tras redirigir a {final_url})"
        return status < 400, status, reason
    return _run_check(url, timeout, client, run)


def check_portal(portal_url: str, nombre: str, ubicacion: str, *, timeout: float = 10.0,
                 client: httpx.Client | None = None) -> CheckResult:
    """GET the Portal page and look for a visible link «nombre» pointing to `ubicacion`."""
    def run(http: httpx.Client, deadline: float) -> tuple[bool, int, str]:
        response = _open(http, portal_url, timeout, deadline)
        status = response.status_code
        if not 200 <= status < 300:
            response.close()
            return False, status, f"El Portal respondió {status}"
        body = _read_limited(response, timeout, deadline)
        try:
            doc = parse_html(_as_utf8(body, response.charset_encoding))
        except XmlError as exc:
            reason = f"No se pudo interpretar la página del Portal: {exc.message}"
            raise _Failure(reason, status) from None
        ok, reason = _find_link(doc, str(response.url), nombre, ubicacion)
        return ok, status, reason
    return _run_check(portal_url, timeout, client, run)


# ---------------------------------------------------------------- HTTP plumbing

def _run_check(url, timeout, client, run) -> CheckResult:
    """Time `run`, give it a client, and turn every failure into a CheckResult."""
    started = time.monotonic()
    status = None
    try:
        _require_http_url(url)  # before any client exists: no request for bad schemes
        if client is None:
            with make_client(timeout) as own:
                ok, status, reason = run(own, started + timeout)
        else:
            ok, status, reason = run(client, started + timeout)
    except _Failure as failure:
        ok, status, reason = False, failure.status_code, failure.reason
    except httpx.TimeoutException:
        ok, reason = False, _timeout_reason(timeout, url)
    except httpx.ConnectError as exc:
        ok, reason = False, f"No se pudo conectar con {url} ({_connect_detail(exc)})"
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        ok, reason = False, f"Error de comunicación al consultar {url}: {type(exc).__name__}"
    elapsed_ms = round((time.monotonic() - started) * 1000)
    return CheckResult(ok=ok, url=url, status_code=status, elapsed_ms=elapsed_ms, reason=reason)


def _require_http_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        valid = parts.scheme.lower() in ALLOWED_SCHEMES and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise _Failure(f"URL no válida: {url!r} (solo se aceptan direcciones http y https)")


def _open(client: httpx.Client, url: str, timeout: float, deadline: float) -> httpx.Response:
    """Streamed GET following at most MAX_REDIRECTS redirects, each hop re-validated."""
    request = client.build_request("GET", url, timeout=_remaining(deadline, timeout, url))
    for _hop in range(MAX_REDIRECTS + 1):
        response = client.send(request, stream=True, follow_redirects=False)
        if response.next_request is None:
            return response
        response.close()
        request = response.next_request
        if request.url.scheme not in ALLOWED_SCHEMES:  # no detour to file:, ftp:, ...
            raise _Failure(f"{response.url} redirige a {response.headers.get('location')}, que no "
                           f"es una dirección http o https", response.status_code)
        request.extensions["timeout"] = httpx.Timeout(_remaining(deadline, timeout, url)).as_dict()
    raise _Failure(f"Demasiadas redirecciones (más de {MAX_REDIRECTS}) al consultar {url}",
                   response.status_code)


def _read_limited(response: httpx.Response, timeout: float, deadline: float) -> bytes:
    """Read the body, giving up past MAX_HTML_BYTES or the deadline (slow drip servers)."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_HTML_BYTES:
                raise _Failure(f"La página del Portal excede el tamaño máximo de "
                               f"{MAX_HTML_BYTES // (1024 * 1024)} MB", response.status_code)
            chunks.append(chunk)
            _remaining(deadline, timeout, str(response.url))
    finally:
        response.close()
    return b"".join(chunks)


def _remaining(deadline: float, timeout: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failure(_timeout_reason(timeout, url))
    return left


def _timeout_reason(timeout: float, url: str) -> str:
    return f"Tiempo de espera agotado ({timeout:g} s) al consultar {url}"


def _connect_detail(exc: BaseException) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "conexión rechazada"
    if "name" in text or "resolution" in text or "nodename" in text:
        return "no se pudo resolver el nombre del servidor"
    if "certificate" in text or "ssl" in text:
        return "error en el certificado o la negociación TLS"
    return "error de red"


def _as_utf8(body: bytes, http_charset: str | None) -> bytes:
    """Hand lxml UTF-8 with a BOM when we know the encoding.

    Without a BOM or <meta charset> lxml reads bytes as Latin-1, which would break
    accented link names on pages declaring UTF-8 only in the HTTP header.
    """
    if body.startswith(_UTF8_BOM):
        return body
    if http_charset:
        try:
            return _UTF8_BOM + body.decode(http_charset, errors="replace").encode("utf-8")
        except LookupError:
            pass  # unknown charset name: fall through to sniffing
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return body  # legacy page: let its <meta charset> decide
    return _UTF8_BOM + body


# ---------------------------------------------------------------- link matching

def normalize_text(text: str) -> str:
    """Compare link names like a person would: spacing, case and accents' encoding ignored."""
    text = " ".join(unicodedata.normalize("NFC", text).split())
    return unicodedata.normalize("NFC", text.casefold())


def normalize_url(url: str) -> str:
    """Canonical form for comparing hrefs: lowercase scheme/host, no default port or fragment."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    path = parts.path or ("/" if netloc else "")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _is_hidden(element) -> bool:
    """True when the element or an ancestor keeps it off screen."""
    node = element
    while node is not None:
        if _hides(node):
            return True
        node = node.getparent()
    return False


def _hides(node) -> bool:
    if node.tag == "template" or node.get("hidden") is not None:
        return True
    if (node.get("aria-hidden") or "").strip().lower() == "true":
        return True
    style = "".join((node.get("style") or "").split()).lower()
    return "display:none" in style or "visibility:hidden" in style


def _base_url(doc, page_url: str) -> str:
    # Browsers resolve hrefs against <base href> when the page has one.
    for base in doc.iter("base"):
        href = (base.get("href") or "").strip()
        if href:
            return _resolve(page_url, href) or page_url
    return page_url


def _resolve(base: str, href: str) -> str | None:
    """urljoin that tolerates the malformed hrefs a page may contain."""
    try:
        return urljoin(base, href.strip())
    except ValueError:
        return None


def _find_link(doc, page_url: str, nombre: str, ubicacion: str) -> tuple[bool, str]:
    """Classify the page's links against the expected name and destination."""
    base = _base_url(doc, page_url)
    want_name, want_href = normalize_text(nombre), normalize_url(ubicacion)
    hidden = same_name = same_href = None
    for link in doc.iter("a"):
        href = link.get("href")
        if href is None:
            continue
        text, target = link.text_content(), _resolve(base, href) or href
        name_ok = normalize_text(text) == want_name
        href_ok = normalize_url(target) == want_href
        if name_ok and href_ok:
            if not _is_hidden(link):
                return True, (f"El enlace «{nombre}» con destino {ubicacion} "
                              "está visible en el Portal")
            hidden = True
        elif name_ok and same_name is None:
            same_name = target
        elif href_ok and same_href is None:
            same_href = _shorten(" ".join(text.split()))
    return False, _missing_reason(nombre, ubicacion, hidden, same_name, same_href)


def _missing_reason(nombre, ubicacion, hidden, same_name, same_href) -> str:
    if hidden:
        return f"El enlace «{nombre}» con destino {ubicacion} existe en el Portal pero está oculto"
    if same_name is not None:
        return (f"El Portal tiene un enlace «{nombre}», pero el enlace apunta a {same_name} "
                f"en lugar de {ubicacion}")
    if same_href is not None:
        return (f"El Portal tiene un enlace hacia {ubicacion}, pero con el nombre «{same_href}» "
                f"en lugar de «{nombre}»")
    return f"No se encontró en el Portal un enlace con el nombre «{nombre}» hacia {ubicacion}"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
