"""Figures from the runs: the median of every figure per (scenario, target).

Owns the common key names of the two load generators' results, the medians
and notes per cell, and how numbers are written in the tables.
"""

from __future__ import annotations

from typing import Any

from chatproto.bench import median

__all__ = ["fmt_ms", "fmt_num", "fmt_pct", "normalise", "summarise"]


def normalise(result: dict[str, Any]) -> dict[str, Any]:
    """Common key names for chatproto-bench's and chatload's results."""
    if "bench_cpu_max_pct" in result:
        result["loadgen_cpu_pct"] = result["bench_cpu_max_pct"]
    elif "client_cpu_pct" in result:
        result["loadgen_cpu_pct"] = result["client_cpu_pct"]
    if "rss_start_kb" not in result and "rss_after_login_kb" in result:
        result["rss_start_kb"] = result["rss_after_login_kb"]  # chatload's name
    return result


def _word(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def fmt_num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and abs(x) < 100:
        return f"{x:.2f}"
    return f"{x:,.0f}"


def fmt_pct(x: Any) -> str:
    return "-" if x is None else f"{x:.0f}%"


def fmt_ms(us: Any) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def summarise(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Medians per (scenario, target) of every numeric figure, plus notes."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    fails: dict[tuple[str, str], list[str]] = {}
    for rec in records:
        key = (rec["scenario"], rec["target"])
        if rec.get("ok"):
            groups.setdefault(key, []).append(normalise(rec["result"]))
        else:
            fails.setdefault(key, []).append(str(rec.get("error", "failed"))[:300])
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key in set(groups) | set(fails):
        results = groups.get(key, [])
        med: dict[str, Any] = {"n": len(results), "failures": fails.get(key, [])}
        numeric = {k for r in results for k, v in r.items() if isinstance(v, (int, float))}
        for k in numeric:
            vals = [
                float(r[k])
                for r in results
                if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
            ]
            if vals:
                med[k] = median(vals)
        for k in ("slow_state", "others_healthy"):
            states = sorted({_word(r.get(k)) for r in results if k in r})
            if states:
                med[k] = "/".join(states)
        warnings = sorted({w for r in results for w in r.get("warnings", [])})
        med["warnings"] = warnings
        med["bottleneck"] = any(r.get("loadgen_cpu_pct", 0) > 90 for r in results)
        crashes = [rec for rec in records if (rec["scenario"], rec["target"]) == key]
        med["crashes"] = [
            rec.get("server_stderr_tail", "") for rec in crashes if rec.get("server_crashed")
        ]
        med["slow_stops"] = sum(
            1
            for rec in crashes
            if not rec.get("server_crashed") and rec.get("server_exited_on_sigterm") is False
        )
        out[key] = med
    return out
