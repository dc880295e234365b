"""Figures from the workers' raw results, and the summary table.

Owns the definitions of every reported figure (what is divided by what), the
warnings (the load generator was CPU-bound, lines were lost, ...), and the
human table. Never does I/O; the CLI prints what this returns.
"""

from __future__ import annotations

from typing import Any

from ._config import LINE_COUNTERS, BenchConfig
from ._stats import NS, LatencyHistogram

__all__ = ["CPU_WARN_PCT", "render_table", "summarise"]

#: Above this CPU share of one core, a worker is (nearly) saturated and the
#: figures are a lower bound of what the server can do.
CPU_WARN_PCT = 90.0


def _sum(results: list[dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in results)


def summarise(
    cfg: BenchConfig, results: list[dict[str, Any]], server: dict[str, Any]
) -> dict[str, Any]:
    """One flat JSON-able dict from the per-process raw results.

    Key names follow chatload's where the figure is the same, so tools can
    read either.
    """
    out: dict[str, Any] = {
        "scenario": cfg.scenario,
        "ok": True,
        "tool": "chatproto-bench",
        "label": cfg.label,
        "host": cfg.host,
        "port": cfg.port,
        "clients": cfg.clients,
        "procs": cfg.procs,
    }
    counters = (*LINE_COUNTERS, "alive_at_end", "idle_open_at_end")
    for key in counters:
        out[key] = _sum(results, key)
    errnos: dict[str, int] = {}
    for r in results:
        for k, v in r["connect_errno"].items():
            errnos[k] = errnos.get(k, 0) + v
    out["connect_errno"] = errnos
    out["first_err_line"] = next((r["first_err_line"] for r in results if r["first_err_line"]), "")
    out["first_other_line"] = next(
        (r["first_other_line"] for r in results if r["first_other_line"]), ""
    )
    out["echo_to_sender"] = out["echoes"] > 0

    # The load generator's own CPU, per process, over the measured window.
    cpu = [round(100 * r["cpu_s"] / r["wall_s"], 1) if r["wall_s"] > 0 else 0.0 for r in results]
    # ... and the share of the window its loop waited for the server: near 0
    # with CPU well below 100 % means naps or the machine's other load.
    out["bench_idle_pct"] = [
        round(100 * r["idle_s"] / r["wall_s"], 1) if r["wall_s"] > 0 else 0.0 for r in results
    ]
    out["bench_cpu_pct"] = cpu
    out["bench_cpu_max_pct"] = max(cpu) if cpu else 0.0
    out["loadgen_bottleneck"] = out["bench_cpu_max_pct"] > CPU_WARN_PCT
    out.update(server)

    logins = LatencyHistogram()
    for r in results:
        logins.merge(r["login_hist"])
    out.update(logins.summary("login_lat"))
    starts = [r["t_first_connect"] for r in results if r["t_first_connect"]]
    ends = [r["t_last_login"] for r in results if r["t_last_login"]]
    if starts and ends and max(ends) > min(starts):
        phase = (max(ends) - min(starts)) / NS
        out["login_phase_s"] = round(phase, 3)
        out["logins_per_s"] = round(out["logins_ok"] / phase, 1)

    hist = LatencyHistogram()
    for r in results:
        hist.merge(r["hist"])
    duration = cfg.duration
    scenario = cfg.scenario
    if scenario in ("fanout", "slowreader"):
        _broadcast_figures(cfg, results, hist, out)
    elif scenario == "idle":
        _idle_figures(cfg, results, out)
        if cfg.room:
            _broadcast_figures(cfg, results, hist, out)
    elif scenario == "pingpong":
        out["warmup_s"] = cfg.warmup
        out["duration_s"] = duration
        out["pings_sent"] = _sum(results, "pings_sent")
        out["pongs_in_window"] = _sum(results, "pongs_in_window")
        out["pongs_per_s"] = round(out["pongs_in_window"] / duration, 1)
        out.update(hist.summary("lat"))
    else:  # connect
        out["hold_s"] = duration
        out["alive_after_hold"] = _sum(results, "alive_after_hold")
        out["lines_read"] = _sum(results, "lines")
        bursts = [r["burst_ns"] for r in results if r["alive_after_hold"]] or [-1]
        out["burst_pongs"] = _sum(results, "burst_pongs")
        out["burst_all_ms"] = None if any(b < 0 for b in bursts) else round(max(bursts) / 1e6, 1)
    if out["logins_ok"] == 0 and not (scenario == "idle" and out["idle_open"]):
        out["ok"] = False
        out["error"] = _why_nobody_logged_in(out)
    out["warnings"] = _warnings(cfg, out)
    return out


def _broadcast_figures(
    cfg: BenchConfig, results: list[dict[str, Any]], hist: LatencyHistogram, out: dict[str, Any]
) -> None:
    duration = cfg.duration
    out["senders"] = _sum(results, "senders")
    out["window"] = cfg.window
    out["ack"] = cfg.ack
    out["payload"] = cfg.payload
    out["warmup_s"] = cfg.warmup
    out["duration_s"] = duration
    out["sent_total"] = _sum(results, "sent")
    out["sent_in_window"] = _sum(results, "sent_in_window")
    out["msgs_per_s"] = round(out["sent_in_window"] / duration, 1)
    deliveries = _sum(results, "deliveries_in_window")
    out["deliveries_in_window"] = deliveries
    out["deliveries_per_s"] = round(deliveries / duration, 1)
    # Every message should reach every logged-in reading client but its sender.
    readers = _sum(results, "readers")
    expected = out["sent_in_window"] * max(0, readers - 1)
    out["expected_in_window"] = expected
    out["delivery_ratio"] = round(deliveries / expected, 4) if expected else None
    out["acked"] = _sum(results, "acked")
    out["ack_timeouts"] = _sum(results, "ack_timeouts")
    out.update(hist.summary("lat"))
    series = [0] * max(len(r["series"]) for r in results)
    for r in results:
        for i, v in enumerate(r["series"]):
            series[i] += v
    out["deliv_per_s"] = series
    if cfg.scenario == "slowreader":
        slow = results[0]
        out["slow_state"] = slow["slow_state"]
        times = [r["slow_disconnected_at"] for r in results if r["slow_disconnected_at"]]
        out["slow_disconnected_at_s"] = None
        if times:
            # Seconds of load (from go, warm-up included) before the drop was
            # noticed: never negative, unlike a time from the measured window.
            t_go = int(results[0]["t_go"])
            out["slow_disconnected_at_s"] = round(max(0, min(times) - t_go) / NS, 2)
            if out["slow_state"] in ("alive", "unresponsive_or_backlogged", ""):
                out["slow_state"] = "disconnected_during_run"
        out["slow_drained_bytes"] = slow["slow_drained_bytes"]
        best = max(series) if series else 0
        tail = sorted(series[-3:])
        out["others_healthy"] = bool(best) and tail[len(tail) // 2] >= best / 2


def _idle_figures(cfg: BenchConfig, results: list[dict[str, Any]], out: dict[str, Any]) -> None:
    """How many idle connections were held, what each cost, how fast a login was."""
    out["idle"] = cfg.clients
    out["room"] = cfg.room
    out["source_addrs"] = cfg.source_addrs
    out["hold_s"] = cfg.warmup + cfg.duration
    starts = [r["t_first_connect"] for r in results if r["t_first_connect"]]
    ends = [r["t_last_login"] for r in results if r["t_last_login"]]
    if starts and ends and max(ends) > min(starts):
        phase = (max(ends) - min(starts)) / NS
        out["open_phase_s"] = round(phase, 3)
        out["opens_per_s"] = round((out["idle_open"] + out["logins_ok"]) / phase, 1)
    before, ready = out.get("rss_before_kb"), out.get("rss_ready_kb")
    held = out["idle_open"] + out["logins_ok"]  # the room's users are noise among thousands
    if before is not None and ready is not None and held:
        out["rss_per_conn_kb"] = round((ready - before) / held, 2)
    probes = LatencyHistogram()
    for r in results:
        probes.merge(r["probe_hist"])
    out.update(probes.summary("probe_login"))
    out["probes"] = _sum(results, "probes")
    out["probe_fail"] = _sum(results, "probe_fail")


def _why_nobody_logged_in(out: dict[str, Any]) -> str:
    if out["connect_fail"]:
        return f"no client could connect ({out['connect_errno']})"
    if out["login_err"]:
        return f"every LOGIN was refused (first: {out['first_err_line']!r})"
    if out["login_timeout"]:
        return "no LOGIN reply (OK/ERR) came back in time"
    return "no client logged in"


def _warnings(cfg: BenchConfig, out: dict[str, Any]) -> list[str]:
    w = []
    for i, pct in enumerate(out["bench_cpu_pct"]):
        if pct > CPU_WARN_PCT:
            w.append(
                f"the load generator was CPU-bound (process {i}: {pct:.0f}% of a core): "
                "the figures are a lower bound of the server's capacity; "
                "use more --procs (on free cores) or chatload"
            )
    failed = out["login_err"] + out["login_timeout"] + out["connect_fail"] + out["login_disconnect"]
    if failed:
        w.append(f"{failed} of {cfg.clients} clients did not log in")
    if out["disconnects"]:
        w.append(f"{out['disconnects']} logged-in clients were disconnected during the run")
    if out.get("ack_timeouts"):
        w.append(f"{out['ack_timeouts']} messages were never acknowledged (lost or late)")
    ratio = out.get("delivery_ratio")
    if ratio is not None and ratio < 0.999 and cfg.scenario == "fanout":
        w.append(f"only {100 * ratio:.2f}% of the expected deliveries arrived")
    if out["echoes"]:
        w.append(f"the server echoed {out['echoes']} messages to their sender")
    if out["err_lines"]:
        w.append(f"{out['err_lines']} ERR lines (first: {out['first_err_line']!r})")
    server_cpu = out.get("server_cpu_pct")
    if (
        cfg.scenario != "connect"
        and server_cpu is not None
        and server_cpu < 80
        and out["bench_cpu_max_pct"] < 80
    ):
        w.append(
            f"neither the server ({server_cpu:.0f}% CPU) nor the load generator was saturated: "
            "the rate is bound by round trips (closed loop); more --window or --senders "
            "would load the server more (or the machine is busy with something else)"
        )
    if cfg.scenario == "connect" and out.get("burst_all_ms") is None and out["logins_ok"]:
        w.append(f"not every client got its PONG within {cfg.burst_timeout:g}s")
    return w


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and unit == "ms":
        return f"{value / 1000:.2f} ms"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    if isinstance(value, float):
        return f"{value:,.0f}{unit}" if abs(value) >= 100 else f"{value:,.2f}{unit}"
    return str(value)


def _idle_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("idle connections", f"{result['idle_open']:,} open of {result['idle']:,}"),
        ("still open at end", _fmt(result["idle_open_at_end"])),
        ("dropped by server", _fmt(result["idle_dropped"])),
        ("opened in", _fmt(result.get("open_phase_s"), " s")),
        ("source addresses", str(result["source_addrs"] or "default")),
    ]
    if result["room"]:
        rows.append(("room", f"{result['room']:,} users"))
    if "rss_ready_kb" in result and "rss_before_kb" in result:
        rss = f"{result['rss_before_kb'] / 1024:.1f} -> {result['rss_ready_kb'] / 1024:.1f} MiB"
        rows.append(("server RSS, before -> open", rss))
    if result.get("rss_per_conn_kb") is not None:
        rows.append(("server RSS per conn", f"{result['rss_per_conn_kb']:.2f} KiB"))
    probes = f"{result['probe_login_n']} of {result['probes']} answered"
    rows += [
        (
            "probe logins",
            probes + (f", {result['probe_fail']} failed" if result["probe_fail"] else ""),
        ),
        ("probe login p50", _fmt(result["probe_login_p50_us"], "ms")),
        ("probe login max", _fmt(result["probe_login_max_us"], "ms")),
    ]
    return rows


def render_table(result: dict[str, Any]) -> str:
    """The human summary of one result, as aligned text lines."""
    if not result.get("ok"):
        return f"chatproto-bench {result['scenario']}: FAILED: {result.get('error')}"
    rows: list[tuple[str, str]] = []
    s = result["scenario"]
    rows.append(("target", f"{result['host']}:{result['port']}"))
    if s != "idle":
        rows.append(("clients", f"{result['logins_ok']:,} logged in of {result['clients']:,}"))
    if s == "idle":
        rows += _idle_rows(result)
    if s in ("fanout", "slowreader") or (s == "idle" and result["room"]):
        rows += [
            (
                "senders x window",
                f"{result['senders']} x {result['window']} (ack: {result['ack']})",
            ),
            ("window", f"{result['duration_s']:g}s after {result['warmup_s']:g}s warm-up"),
            ("deliveries/s", _fmt(result["deliveries_per_s"])),
            ("messages/s", _fmt(result["msgs_per_s"])),
            ("delivery ratio", _fmt(result["delivery_ratio"])),
            ("latency p50", _fmt(result["lat_p50_us"], "ms")),
            ("latency p99", _fmt(result["lat_p99_us"], "ms")),
            ("latency max", _fmt(result["lat_max_us"], "ms")),
            ("ack timeouts", _fmt(result["ack_timeouts"])),
        ]
        if s == "slowreader":
            rows += [
                ("slow reader", str(result["slow_state"])),
                ("dropped after", _fmt(result["slow_disconnected_at_s"], " s of load")),
                ("its backlog", _fmt(result["slow_drained_bytes"], " B")),
                ("others healthy", _fmt(result["others_healthy"])),
            ]
    elif s == "pingpong":
        rows += [
            ("window", f"{result['duration_s']:g}s after {result['warmup_s']:g}s warm-up"),
            ("pongs/s", _fmt(result["pongs_per_s"])),
            ("latency p50", _fmt(result["lat_p50_us"], "ms")),
            ("latency p99", _fmt(result["lat_p99_us"], "ms")),
            ("latency max", _fmt(result["lat_max_us"], "ms")),
        ]
    elif s == "connect":
        rows += [
            ("logins/s", _fmt(result.get("logins_per_s"))),
            ("login p50", _fmt(result["login_lat_p50_us"], "ms")),
            ("login p99", _fmt(result["login_lat_p99_us"], "ms")),
            ("alive after hold", _fmt(result["alive_after_hold"])),
            ("PING burst, all", _fmt(result["burst_all_ms"], " ms")),
            ("lines read", _fmt(result["lines_read"])),
        ]
    rows += [
        ("disconnects", _fmt(result["disconnects"])),
        ("ERR lines", _fmt(result["err_lines"])),
        ("INFO / other lines", f"{result['info_lines']:,} / {result['other_lines']:,}"),
        ("bench CPU per proc", " ".join(f"{p:.0f}%" for p in result["bench_cpu_pct"])),
    ]
    if "server_cpu_pct" in result:
        rows.append(("server CPU", f"{result['server_cpu_pct']:.0f}%"))
    if "rss_max_kb" in result:
        rows.append(
            (
                "server RSS",
                f"{result['rss_start_kb'] / 1024:.1f} -> max {result['rss_max_kb'] / 1024:.1f} MiB",
            )
        )
    width = max(len(k) for k, _ in rows)
    lines = [f"chatproto-bench {s}" + (f" ({result['label']})" if result.get("label") else "")]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += [f"  WARNING: {w}" for w in result["warnings"]]
    return "\n".join(lines)
