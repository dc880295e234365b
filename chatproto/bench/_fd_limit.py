"""How many files this process may open: as many as its hard limit allows.

A load generator holds one descriptor per connection, and the default soft
limit (often 1,024) is far below what a run needs, while the hard limit is
what the administrator granted (20,000 on the machines of issue 10). Shared
by the worker processes and ``benchmarks/run.py`` (whose servers inherit it).
"""

from __future__ import annotations

__all__ = ["raise_fd_limit"]


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; the soft limit now in force.

    Returns ``-1`` where the limit is unknown (no ``resource`` module) or
    unlimited. Never raises: a limit that cannot be raised stays as it was.
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return -1 if soft == resource.RLIM_INFINITY else int(soft)
