"""bqetl's Jinja in reviewed queries, rendered as bigquery-etl renders a daily run.

bigquery-etl renders every query.sql with Jinja before it runs: `is_init()` is false for a daily
run and true when the table is built from scratch (`bqetl query initialize`, its `test_init` SQL
test). pubdata renders the same way, in a sandbox (no file includes, no attribute tricks, an
undefined name is an error naming it), so the static checks and the warehouse see the SQL that
runs. The reviewed text itself (published as query.sql, hashed) keeps its template.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import jinja2
from jinja2.sandbox import SandboxedEnvironment

INIT: ContextVar[bool] = ContextVar("pubdata_sql_init", default=False)
"""Whether `is_init()` is true: a full rebuild (bqetl's initialize), not a daily run."""

_MARKERS = ("{{", "{%", "{#")


class TemplateError(ValueError):
    """The query's template does not render; the message says where and why."""


@contextmanager
def initializing(init: bool = True) -> Iterator[None]:
    """Render `is_init()` as `init` within this block (a full rebuild, bqetl's test_init case)."""
    token = INIT.set(init)
    try:
        yield
    finally:
        INIT.reset(token)


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    return env


def render(text: str) -> str:
    """The query as it runs: the Jinja template rendered with bqetl's context for a daily run."""
    if not any(m in text for m in _MARKERS):
        return text
    init = INIT.get()
    try:
        return _environment().from_string(text).render(is_init=lambda: init)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the query's Jinja template does not parse at line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"the query's Jinja template uses something pubdata does not provide ({exc.message}); a template gets "
            "bqetl's daily-run context, `is_init()`, and nothing else (metric-hub's `metrics.calculate` is not "
            "available: write the SQL it generates)") from None
    except jinja2.TemplateError as exc:  # SecurityError and the rest
        raise TemplateError(f"the query's Jinja template cannot be rendered: {exc}") from None
