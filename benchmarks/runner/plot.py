"""The plot: deliveries per second against clients, one line per target.

Owns docs/performance.png; matplotlib is optional (no plot without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import Plan
from .scenarios import CURVE, scenario_params

__all__ = ["plot"]


def plot(plan: Plan, med: dict[tuple[str, str], dict[str, Any]], path: Path) -> bool:
    """deliveries/s against clients, one line per target; False if no data."""
    curve = [s for s in plan.scenarios if s.key in CURVE]
    if not curve:
        return False
    try:
        import matplotlib  # noqa: PLC0415 - optional, only for the plot

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = False
    for t in plan.targets:
        xs, ys = [], []
        for s in curve:
            m = med.get((s.key, t.name))
            if m and m.get("deliveries_per_s"):
                xs.append(scenario_params(s, t, plan.quick)["clients"])
                ys.append(m["deliveries_per_s"])
        if xs:
            style = "-o" if t.kind == "product" else "--s"
            ax.plot(xs, ys, style, label=t.name)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    sizes = sorted({scenario_params(s, None, plan.quick)["clients"] for s in curve})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("clients (10 senders)")
    ax.set_ylabel("deliveries per second (median)")
    title = "fanout throughput" + (" (smoke, not a measurement)" if plan.quick else "")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
