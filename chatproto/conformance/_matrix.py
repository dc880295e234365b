"""``matrix``: one static HTML page comparing implementations test by test.

Rows are tests (the union over all reports, in catalogue order), columns are
implementations, each cell coloured by outcome with the reason on hover.
Needs nothing but the JSON reports; the page has no scripts and no external
resources.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from ._outcome import Outcome, Result, RunReport
from ._registry import AREAS

__all__ = ["render_matrix"]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.test { font-family: ui-monospace, monospace; white-space: nowrap; }
td.area { background: #eee; font-weight: bold; }
td.o { text-align: center; font-weight: bold; font-size: 12px; }
.PASS { background: #b7e4b7; } .LENIENT { background: #bfe3ef; }
.SKIP { background: #f3f0c2; } .XFAIL { background: #e5cdef; }
.FAIL { background: #f4a6a6; } .ERROR { background: #c62828; color: #fff; }
.none { background: #fafafa; color: #aaa; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 4px; }
"""


def _order(test_id: str) -> tuple[int, str]:
    area = test_id.split("-", 1)[0]
    areas = list(AREAS)
    number = test_id.rsplit("-", 1)[-1]
    return (areas.index(area) if area in areas else len(areas), number.zfill(4))


def render_matrix(reports: Sequence[RunReport], title: str = "chatproto conformance matrix") -> str:
    """The page, as a string."""
    e = html.escape
    tests: dict[str, Result] = {}
    for report in reports:
        for r in report.results:
            tests.setdefault(r.id, r)
    cells = [{r.id: r for r in report.results} for report in reports]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        '<p class="legend">'
        + "".join(f'<span class="{o.value}">{o.value}</span>' for o in Outcome)
        + "</p>",
        "<table><thead><tr><th>test</th><th>§</th>",
    ]
    for report in reports:
        counts = report.counts()
        summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        status = (
            "unusable"
            if report.unusable
            else ("conformant" if report.exit_code == 0 else "not conformant")
        )
        out.append(
            f'<th title="{e(report.target)}">{e(report.implementation)}<br>'
            f"<small>{e('+'.join(report.profiles))}: {e(status)}<br>{e(summary)}</small></th>"
        )
    out.append("</tr></thead><tbody>")
    area = None
    for test_id in sorted(tests, key=_order):
        r = tests[test_id]
        if r.area != area:
            area = r.area
            out.append(
                f'<tr><td class="area" colspan="{len(reports) + 2}">'
                f"{e(area)} {e(AREAS.get(area, ''))}</td></tr>"
            )
        out.append(
            f'<tr><td class="test" title="{e(r.title)}">{e(r.label)}</td><td>{e(r.section)}</td>'
        )
        for row in cells:
            got = row.get(test_id)
            if got is None:
                out.append('<td class="o none">-</td>')
                continue
            tip = got.reason or got.title
            if got.expected is not None:
                tip += f"\nexpected: {got.expected}"
            if got.got is not None:
                tip += f"\ngot: {got.got}"
            out.append(f'<td class="o {got.outcome.value}" title="{e(tip)}">{e(got.verdict)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"
