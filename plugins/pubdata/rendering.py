"""The Jinja environment of every HTML page pubdata writes: the public catalog, feed and dataset
pages, and the internal validation reports. Autoescaped, so a value in the data or a declaration
cannot inject markup; a missing variable is an error, not an empty string."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def html_templates():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pubdata", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
