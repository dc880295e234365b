"""The ``--markdown`` report: a summary table and failure details, for an issue or a PR."""

from __future__ import annotations

from pathlib import Path

from ._outcome import RunReport

__all__ = ["render_markdown", "write_markdown"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: RunReport) -> str:
    """The report as Markdown."""
    out = [f"# Conformance: {report.implementation}", ""]
    out.append(
        f"Target `{report.target}`, profile **{'+'.join(report.profiles)}**, "
        f"{report.started}, {report.duration:.1f} s."
    )
    out.append("")
    if report.unusable is not None:
        out += [f"**Target unusable:** {report.unusable}", ""]
        return "\n".join(out)
    counts = report.counts()
    out.append(" · ".join(f"{v} {k}" for k, v in counts.items() if v))
    out.append("")
    out.append(f"**{'Conformant' if report.exit_code == 0 else 'Not conformant'}** to the profile.")
    out.append("")
    if report.dialect is not None and report.dialect.get("variants"):
        out.append(
            "Dialect variants seen by the probe: "
            + ", ".join(f"`{v}`" for v in report.dialect["variants"])
        )
        out.append("")
    out += ["| test | § | outcome | detail |", "|---|---|---|---|"]
    for r in report.results:
        detail = r.reason if r.outcome.value != "PASS" else ""
        out.append(f"| {r.id} {r.slug} | {r.section} | {r.verdict} | {_cell(detail)[:200]} |")
    bad = [r for r in report.results if r.outcome.bad]
    for r in bad:
        out += [
            "",
            f"## {r.outcome.value} {r.label} (§{r.section})",
            "",
            r.title,
            "",
            f"- why: {r.reason}",
        ]
        if r.expected is not None:
            out.append(f"- expected: `{_cell(r.expected)}`")
        if r.got is not None:
            out.append(f"- got: `{_cell(r.got)}`")
        if r.transcript:
            out += ["", "```", *r.transcript[-40:], "```"]
        if r.server_output:
            out += ["", "Server stderr:", "", "```", *r.server_output, "```"]
    return "\n".join(out) + "\n"


def write_markdown(report: RunReport, path: str | Path) -> None:
    """Write the Markdown report."""
    Path(path).write_text(render_markdown(report), "utf-8")
