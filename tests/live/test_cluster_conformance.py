"""The conformance suite across a cluster: clients spread over the nodes, one room.

``--cluster-backend`` starts a Redis and one node per backend (mixed), and
each test's connections go to the nodes in turn; ``--cluster-target`` does the
same with nodes already running. Done when strict and robust pass on three
mixed nodes (issue 12).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatproto.conformance._cluster_target import ClusterTarget, make_cluster_target
from chatproto.conformance.cli import build_parser

from .cluster_live import needs_redis, nodes, redis_server

CONFORMANCE = [sys.executable, "-m", "chatproto.conformance"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CONFORMANCE, "run", *args], capture_output=True, text=True, timeout=600, check=False
    )


@needs_redis
def test_strict_and_robust_pass_on_three_mixed_nodes() -> None:
    done = run(
        "--cluster-backend",
        "threading",
        "--cluster-backend",
        "anyio",
        "--cluster-backend",
        "gevent",
        "--profile",
        "strict",
        "--profile",
        "robust",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "CONFORMANT to profile strict+robust" in done.stdout
    assert "SKIP" not in done.stdout  # even the tests that need their own nodes ran


@needs_redis
def test_running_nodes_as_cluster_targets() -> None:
    with redis_server() as redis, nodes() as started:
        a = started.start(redis.url, "a")
        b = started.start(redis.url, "b", ["--backend", "anyio", "--anyio-backend", "trio"])
        done = run(
            f"--cluster-target=tcp://127.0.0.1:{a.port}",
            f"--cluster-target=tcp://127.0.0.1:{b.port}",
            "--profile",
            "strict",
        )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "CONFORMANT to profile strict" in done.stdout


def test_cluster_arguments() -> None:
    parse = build_parser().parse_args
    nodes3 = make_cluster_target(parse(["run", "--backend", "gevent", "--cluster-nodes", "3"]))
    assert isinstance(nodes3, ClusterTarget) and nodes3.backends == [("gevent", None)] * 3
    mixed = make_cluster_target(
        parse(["run", "--cluster-backend", "anyio/trio", "--cluster-backend", "threading"])
    )
    assert isinstance(mixed, ClusterTarget)
    assert mixed.backends == [("anyio", "trio"), ("threading", None)]
    remote = make_cluster_target(
        parse(["run", "--cluster-target", "tcp://h:1", "--cluster-target", "h:2"])
    )
    assert isinstance(remote, ClusterTarget) and remote.addresses == (("h", 1), ("h", 2))
    assert make_cluster_target(parse(["run", "--backend", "gevent"])) is None
    for bad in (
        ["run", "--cluster-backend", "nodejs"],
        ["run", "--cluster-nodes", "2"],
        ["run", "tcp://h:1", "--cluster-target", "tcp://h:2"],
        ["run", "--cluster-backend", "threading", "--cluster-target", "tcp://h:2"],
    ):
        with pytest.raises(ValueError):
            make_cluster_target(parse(bad))
