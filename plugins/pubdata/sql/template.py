"""bqetl's Jinja in reviewed queries, rendered as bigquery-etl renders a daily run.

bigquery-etl renders every query.sql with Jinja before it runs: `is_init()` is false for a daily
run and true when the table is built from scratch (`bqetl query initialize`, its `test_init` SQL
test). pubdata renders the same way, in a sandbox (no file includes, no attribute tricks, an
undefined name is an error naming it), so the static checks and the warehouse see the SQL that
runs. The reviewed text itself (published as query.sql, hashed) keeps its template.

Only the part of Jinja that bqetl's queries use is accepted: `{% if is_init() %}` branches,
`{% set %}` of constants, `{% for %}` over a literal list, and `{{ }}` of names and constants.
Rendering is then bounded by the text itself: a template cannot loop or multiply its way into
minutes of work in the DAG parse that every dataset shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

INIT: ContextVar[bool] = ContextVar("pubdata_sql_init", default=False)
"""Whether `is_init()` is true: a full rebuild (bqetl's initialize), not a daily run."""

_MARKERS = ("{{", "{%", "{#")
MAX_LOOP_ITERATIONS = 10_000
"""Iterations of all `{% for %}` bodies together, nested loops multiplied."""
MAX_RENDERED_CHARS = 2_000_000
"""Characters a rendered query may hold."""

_ALLOWED = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.If, nodes.CondExpr, nodes.Not,
            nodes.And, nodes.Or, nodes.Compare, nodes.Operand, nodes.Name, nodes.Call, nodes.For, nodes.Assign,
            nodes.List, nodes.Tuple, nodes.Concat)
_WORDS = {nodes.Include: "{% include %}", nodes.Import: "{% import %}", nodes.FromImport: "{% from ... import %}",
          nodes.Extends: "{% extends %}", nodes.Macro: "{% macro %}", nodes.CallBlock: "{% call %}",
          nodes.Getattr: "an attribute (x.y)", nodes.Getitem: "an index (x[y])", nodes.Filter: "a filter (x|f)",
          nodes.Test: "a test (x is y)", nodes.BinExpr: "arithmetic", nodes.UnaryExpr: "arithmetic"}


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
    env.globals.clear()  # no range, lipsum, cycler...: only what render passes
    return env


def _undefined(what: str) -> TemplateError:
    return TemplateError(
        f"the query's Jinja template uses something pubdata does not provide ({what}); a template gets "
        "bqetl's daily-run context, `is_init()`, and nothing else (metric-hub's `metrics.calculate` is not "
        "available: write the SQL it generates)")


def _refuse(node: nodes.Node, what: str) -> TemplateError:
    return TemplateError(
        f"the query's Jinja template uses {what} at line {node.lineno}; pubdata renders only what bqetl's "
        "queries use: {% if is_init() %} branches, {% set %} of constants, {% for %} over a literal list, "
        "and {{ }} of names and constants")


def _literal_list(node: nodes.Node) -> bool:
    return isinstance(node, nodes.List | nodes.Tuple) and all(isinstance(i, nodes.Const) for i in node.items)


def _vet(node: nodes.Node, repeat: int = 1) -> None:
    """Refuse what bqetl's queries do not use; `repeat` is how often this node runs (enclosing loops)."""
    if not isinstance(node, _ALLOWED):
        what = next((w for kind, w in _WORDS.items() if isinstance(node, kind)), f"{type(node).__name__}")
        raise _refuse(node, what)
    if isinstance(node, nodes.Call):
        if not (isinstance(node.node, nodes.Name) and node.node.name == "is_init") or node.args or node.kwargs \
                or node.dyn_args or node.dyn_kwargs:
            raise _refuse(node, "a call other than is_init()")
    if isinstance(node, nodes.For):
        if not _literal_list(node.iter) or node.recursive:
            raise _refuse(node, "a {% for %} over something other than a literal list")
        repeat *= max(len(node.iter.items), 1)  # type: ignore[attr-defined]
        if repeat > MAX_LOOP_ITERATIONS:
            raise _refuse(node, f"loops running more than {MAX_LOOP_ITERATIONS:,} times")
    if isinstance(node, nodes.Assign) and not (
            isinstance(node.node, nodes.Const) or _literal_list(node.node)):
        raise _refuse(node, "a {% set %} of something other than a constant")
    for child in node.iter_child_nodes():
        _vet(child, repeat)


def render(text: str) -> str:
    """The query as it runs: the Jinja template rendered with bqetl's context for a daily run."""
    if not any(m in text for m in _MARKERS):
        return text
    init = INIT.get()
    try:
        env = _environment()
        tree = env.parse(text)
        names = list(tree.find_all(nodes.Name))
        given = {"is_init"} | {n.name for n in names if n.ctx != "load"} | {m.name for m in tree.find_all(nodes.Macro)}
        unknown = next((n for n in names if n.ctx == "load" and n.name not in given), None)
        if unknown is not None:
            raise _undefined(f"'{unknown.name}' is undefined, line {unknown.lineno}")
        _vet(tree)
        out: list[str] = []
        size = 0
        for chunk in env.from_string(text).generate(is_init=lambda: init):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise TemplateError(f"the query's Jinja template renders to more than {MAX_RENDERED_CHARS:,} "
                                    "characters; write the SQL with fewer repetitions")
            out.append(chunk)
        return "".join(out)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the query's Jinja template does not parse at line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise _undefined(str(exc.message)) from None
    except jinja2.TemplateError as exc:  # SecurityError and the rest
        raise TemplateError(f"the query's Jinja template cannot be rendered: {exc}") from None
