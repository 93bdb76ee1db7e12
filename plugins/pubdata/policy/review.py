"""The review request: what a data engineer pastes into the review bug for the data steward.

Markdown (Bugzilla and GitHub render it): the dataset and where its files are, every published
column with its category, the four review questions answered with the fields that decided them,
the verdict, the static checks of the query, and the checklist the steward signs off against.
It is built from the same verdict the DAG factory and `pubdata check` use.
"""

from __future__ import annotations

from pathlib import Path

from pubdata.declarations import Declaration
from pubdata.declarations.loader import relative
from pubdata.policy.verdict import AGGREGATION_LEVELS, CATEGORIES, effective_level, steward_checklist, verdict
from pubdata.sql.rules import check_query

VERDICT_TITLES = {
    "publishable": "publishable without extra review",
    "needs_signoff": "needs the data steward's sign-off",
    "signed_off": "signed off by the data steward",
    "refused": "refused (no sign-off can publish it)",
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or " "


def _rel(path: Path, project: Path) -> str:
    return relative(path, project).as_posix()


def _level(decl: Declaration) -> str:
    p = decl.spec.policy
    text = f"{p.aggregation_level} ({AGGREGATION_LEVELS[p.aggregation_level]})"
    if p.bucket_column:
        text += f"; minimum bucket {p.min_bucket_size:,} distinct clients in `{p.bucket_column}`"
    effective = effective_level(p)
    if effective != p.aggregation_level:
        text += f"; judged as level {effective}"
    return text


def _columns(decl: Declaration) -> list[str]:
    p = decl.spec.policy
    rows = [
        "| column | role | category | kind | sensitive | data-collection review | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in p.dimensions:
        rows.append(
            f"| `{d.name}` | dimension | {d.category} ({CATEGORIES[d.category]}) | {d.kind} | "
            f"{'yes' if d.category == 4 else 'no'} | {'yes' if d.data_review else '**no**'} | {_cell(d.description)} |"
        )
    for m in p.metrics:
        role = "metric, bucket" if m.name == p.bucket_column else "metric"
        rows.append(
            f"| `{m.name}` | {role} | | | {'**yes**' if m.sensitive else 'no'} | "
            f"{'yes' if m.data_review else '**no**'} | {_cell(m.description)} |"
        )
    return rows


def _enforcement(decl: Declaration) -> list[str]:
    """What the pipeline computes itself for this dataset: the reviewer reads what will run."""
    from pubdata.errors import PolicyRefused
    from pubdata.sql.rewrite import enforces_minimum, rolled_up
    from pubdata.sql.rules import analyze_query

    policy = decl.spec.policy
    shape = analyze_query(decl.query, decl.spec).shape
    out = ["", "### What the pipeline enforces", ""]
    if shape is not None and shape.level is not None:
        out.append(f"- The query's shape allows aggregation level {shape.level} at the lowest "
                   f"(declared: {policy.aggregation_level}).")
    if not enforces_minimum(decl.spec):
        out.append("- No minimum bucket: the dataset is not at aggregation level 2.")
        return out
    out.append(f"- Every published row counts at least {policy.min_bucket_size:,} distinct `{policy.privacy_unit}` "
               "values, counted by the warehouse; rows under it are dropped there, and validation fails when "
               f"`{policy.bucket_column}` disagrees with the count or rows differ by fewer clients than the minimum.")
    if policy.rollup is not None:
        steps = " → ".join(", ".join([s] if isinstance(s, str) else s) for s in policy.rollup.steps)
        out.append(f"- Rare combinations are grouped into `{policy.other_label}` by the pipeline, in this order: "
                   f"{steps}. The query as stage runs it:")
        try:
            text = rolled_up(decl.query, decl.spec)
        except PolicyRefused as exc:
            text = f"-- not rolled up: {exc}"
        out += ["", "<details><summary>rolled-up query</summary>", "", "```sql", text, "```", "", "</details>"]
    return out


def _extreme_values(decl: Declaration) -> list[str]:
    """MIN and MAX publish one client's value: the steward signs off on each such metric."""
    from pubdata.sql.rules import analyze_query
    from pubdata.sql.shape import STEWARD_AGGREGATES, aggregates_in

    shape = analyze_query(decl.query, decl.spec).shape
    items = []
    for target in shape.targets if shape is not None else []:
        for projection in target.select.selects:
            if any(type(a) in STEWARD_AGGREGATES for a in aggregates_in(projection.unalias())):
                item = (f"Metric {projection.alias_or_name} is the smallest or largest value of its row "
                        "(MIN/MAX): one client's value; confirm it is safe to publish")
                if item not in items:
                    items.append(item)
    return items


def review_markdown(decl: Declaration, project: Path) -> str:
    """The review request for one declaration, as Markdown text."""
    spec = decl.spec
    v = verdict(spec)
    out = [f"## Data publishing review: `{decl.id}`", "", f"**{spec.friendly_name}**", "", spec.description.strip(), ""]
    query = f"`{_rel(decl.query_path, project)}` (sha256 `{decl.query_sha256}`)"
    out += [
        "| | |",
        "|---|---|",
        f"| Declaration | `{_rel(decl.metadata_path, project)}` |",
        f"| Query | {query} |",
        f"| Owners | {', '.join(spec.owners)} |",
        f"| Aggregation level | {_cell(_level(decl))} |",
        f"| Review bugs | {', '.join(str(b) for b in spec.review.bugs)} |",
        f"| Data-collection reviews | {', '.join(str(r) for r in spec.review.data_reviews) or '**none listed**'} |",
        f"| Schedule | {spec.schedule or 'manual'}{', one partition per ' + spec.partition_field if spec.incremental and spec.partition_field else ''} |",
        "",
        "### Published columns",
        "",
        *_columns(decl),
        "",
        "### The four review questions",
        "",
    ]
    for a in v.answers:
        out.append(f"{a.number}. **{a.question}** {'**Yes**' if a.answer else 'No'} — {a.reason}")
    out += ["", f"### Verdict: {VERDICT_TITLES[v.status]}", ""]
    out += [f"- {r}" for r in v.reasons]
    if v.fix:
        out += ["", f"**To change the verdict:** {v.fix}"]
    findings = check_query(decl.query, spec)
    out += ["", "### Static checks of the query", ""]
    if findings:
        out += [f"- **{f.rule}**: {f.message} Fix: {f.fix}" for f in findings]
    else:
        out.append(
            "Passed: the query parses, produces exactly the declared columns, derives none of them from an "
            "identifier or another forbidden field, and gives the same result on every run for a date."
        )
    out += _enforcement(decl)
    checklist = steward_checklist(spec) + _extreme_values(decl)
    out += ["", "### What the data steward must check", ""]
    if v.status == "refused":
        out.append("Nothing yet: the policy refuses this declaration whatever the review says; change it first.")
    elif checklist:
        out += [f"- [ ] {item}" for item in checklist]
    else:
        out.append("Nothing: every review question is answered no, so no sign-off is required.")
    out += ["", f"_Generated by `pubdata review {decl.id}`._", ""]
    return "\n".join(out)
