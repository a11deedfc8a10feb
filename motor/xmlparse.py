"""The one place that parses XML and HTML.

BPMN files come from analysts and uploads, portal pages from the network: both
are untrusted. The parsers never resolve entities, never load DTDs, never touch
the network, and refuse documents over a size limit.
"""
import re

from lxml import etree, html

MAX_BPMN_BYTES = 2 * 1024 * 1024
MAX_HTML_BYTES = 5 * 1024 * 1024


class XmlError(ValueError):
    """A document that cannot be accepted; `line` is 0 when unknown."""

    def __init__(self, message, line=0):
        super().__init__(message)
        self.message = message
        self.line = line


def _xml_parser():
    # A fresh parser per call: lxml parsers are not thread-safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def parse_xml(data: bytes) -> etree._ElementTree:
    """Parse untrusted XML bytes; reject DOCTYPEs, entities and oversize input."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_BPMN_BYTES:
        raise XmlError(f"el archivo excede el tamaño máximo de {MAX_BPMN_BYTES // 1024} KB")
    _refuse_dtd(data)
    try:
        root = etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 0
        raise XmlError(f"XML mal formado: {exc.msg}", line) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise XmlError("no se permiten declaraciones DOCTYPE ni entidades", 1)
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise XmlError("no se permiten referencias a entidades", node.sourceline or 0)
    return tree


_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _refuse_dtd(data):
    """Refuse DTDs before libxml2 sees them: entity expansion (billion laughs)
    happens during parsing. Only UTF-8 is accepted, so a byte scan is exact."""
    if b"\x00" in data[:4096]:
        raise XmlError("el archivo debe estar codificado en UTF-8", 1)
    found = _DTD.search(data)
    if found:
        line = data.count(b"\n", 0, found.start()) + 1
        raise XmlError("no se permiten declaraciones DOCTYPE ni entidades", line)


def parse_html(data: bytes):
    """Parse an untrusted HTML page (the portal) into an lxml.html tree."""
    if len(data) > MAX_HTML_BYTES:
        raise XmlError("la página excede el tamaño máximo permitido")
    parser = html.HTMLParser(no_network=True, remove_comments=True, default_doctype=False)
    try:
        return html.document_fromstring(data, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise XmlError(f"HTML ilegible: {exc}") from None
