"""The Jinja environment of every HTML page pubdata writes: the public catalog, feed and dataset
pages, and the internal validation reports. Autoescaped, so a value in the data or a declaration
cannot inject markup; a missing variable is an error, not an empty string; and every value loses
the characters XML 1.0 forbids (control characters, lone surrogates), so no value can make the
Atom feed ill-formed, whatever metadata.json it was read from."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters outside XML 1.0's Char production (tab, line feed and carriage return are in it)."""


def xml_safe(text: str) -> str:
    """text without the characters XML 1.0 forbids."""
    return NOT_XML.sub("", text)


def _finalize(value: Any) -> Any:
    if isinstance(value, str):  # Markup too: it is a str, and stays Markup through type(value)
        return type(value)(xml_safe(value)) if NOT_XML.search(value) else value
    return value


@lru_cache(maxsize=1)
def html_templates():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pubdata", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
