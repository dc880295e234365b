"""The commands the benchmark docs give run from a clean clone (defect 7 of issue 13).

benchmarks/README.md told readers to build a load generator from a folder
outside the repository, and docs/performance.md's commands ran one from
``/tmp``. Every command in those pages (code blocks, and inline code that
starts with a program) must name only programs the repository installs or
contains, and options those programs have. The commands are checked, not run:
they are benchmarks, minutes to an hour long.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chatproto.bench.cli import build_parser as bench_parser
from chatproto.cli.serve import build_parser as serve_parser
from tests import REPO

ROOT = REPO
PAGES = ["benchmarks/README.md", "docs/performance.md", "benchmarks/performance-notes.md"]
#: Programs a command may start with: the project's own.
_PROGRAMS = ("python", "chatproto-serve", "chatproto-bench", "chatproto-conformance")
_FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_INLINE = re.compile(r"`([^`]+)`")


def commands(text: str) -> list[str]:
    """The commands of a page: lines of its code blocks, and inline code starting with a program."""
    found = []
    for block in _FENCE.findall(text):
        found += [line for line in block.splitlines() if line.strip()]
    prose = _FENCE.sub("", text)
    for span in _INLINE.findall(prose):
        span = " ".join(span.split())  # inline code may wrap across lines
        if span.startswith(tuple(f"{p} " for p in _PROGRAMS)):
            found.append(span)
    return found


def simple_commands(line: str) -> list[list[str]]:
    """``a & b && c`` as ``[a], [b], [c]``, comments dropped, each split like a shell."""
    words = shlex.split(line, comments=True)
    out: list[list[str]] = [[]]
    for word in words:
        if word in ("&", "&&", ";", "|", "||"):
            out.append([])
        elif word.endswith("&") and word != "&":
            out[-1].append(word[:-1])
            out.append([])
        else:
            out[-1].append(word)
    return [c for c in out if c]


@functools.cache
def help_text(program: tuple[str, ...]) -> str:
    """What ``program --help`` prints, unwrapped."""
    if program == ("chatproto-serve",):
        return serve_parser().format_help()
    if program == ("chatproto-bench",):
        return bench_parser().format_help()
    if program[0] == "chatproto-conformance":
        argv = [sys.executable, "-m", "chatproto.conformance", *program[1:]]
    else:
        argv = [sys.executable, *program[1:]]  # python SCRIPT
    done = subprocess.run(
        [*argv, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="100000"),
    )
    return done.stdout


def check(command: list[str]) -> None:
    program, args = command[0], command[1:]
    assert program in _PROGRAMS, f"{program!r} is not a program of the repository"
    key: tuple[str, ...] = (program,)
    if program == "python":
        script = args[0]
        assert (ROOT / script).is_file(), f"{script} is not in the repository"
        key, args = (program, script), args[1:]
    elif program == "chatproto-conformance" and args and not args[0].startswith("-"):
        key, args = (program, args[0]), args[1:]  # its options are the subcommand's
    known = help_text(key)
    for i, word in enumerate(args):
        if word.startswith("--"):
            option = word.split("=")[0]
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", known), (
                f"{' '.join(key)} has no option {option}"
            )
        if key[-1] == "benchmarks/run.py" and i and args[i - 1] in ("--only", "--targets"):
            for name in word.split(","):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", known), (
                    f"run.py knows no scenario or target {name}"
                )


_CLIMBING = re.compile(r"(?:\.\./)+[\w./-]*")


def paths_outside(text: str, folder: Path) -> list[str]:
    """The relative paths (``../x``) in ``text`` that lead out of the repository from ``folder``."""
    root = ROOT.resolve()
    return [
        found
        for found in _CLIMBING.findall(text)
        if not (folder / found).resolve().is_relative_to(root)
    ]


@pytest.mark.parametrize("page", PAGES)
def test_commands_use_only_the_repository(page: str) -> None:
    text = (ROOT / page).read_text("utf-8")
    outside = paths_outside(text, (ROOT / page).parent)
    assert not outside, f"{page} sends readers to {outside}, outside the repository"
    lines = commands(text)
    assert lines, f"{page} has no commands"
    for line in lines:
        # Commands run from the clone's top: climbing out of it leaves the repository;
        # a program outside it is refused by check().
        for outside_word in ("../", "--loadgen chatload", "cc -O2"):
            assert outside_word not in line, (
                f"{page}: {line!r} needs something outside the repository"
            )
        for command in simple_commands(line):
            check(command)


def test_the_checker_refuses_what_a_clean_clone_lacks() -> None:
    with pytest.raises(AssertionError, match="not a program of the repository"):
        check(["/tmp/chatload", "fanout", "--port", "4000"])
    with pytest.raises(AssertionError, match="has no option --nap"):
        check(["chatproto-bench", "fanout", "--nap", "1"])
    with pytest.raises(AssertionError, match="not in the repository"):
        check(["python", "benchmarks/nothing.py"])
    with pytest.raises(AssertionError, match="has no option --nope"):
        check(["chatproto-conformance", "run", "--nope"])
    check(["chatproto-conformance", "run", "--backend", "gevent", "--profile", "load"])
    with pytest.raises(AssertionError, match="no scenario or target nope"):
        check(["python", "benchmarks/run.py", "--only", "fanout-10,nope"])
    assert simple_commands("a --x 1 &  b 2 # c") == [["a", "--x", "1"], ["b", "2"]]
    docs = ROOT / "docs"
    assert paths_outside("see `../../elsewhere/tool` and ../benchmarks/run.py", docs) == [
        "../../elsewhere/tool"
    ]


def test_a_page_rendered_from_chatload_results_runs_from_a_clean_clone(tmp_path: Path) -> None:
    """run.py writes docs/performance.md: what it writes must pass the same checks.

    benchmarks/results.json was measured with chatload, so this is the case
    where a page could send readers outside the repository.
    """
    raw = ["--raw", "benchmarks/results.json", "--out", str(tmp_path)]
    subprocess.run(
        [sys.executable, "benchmarks/run.py", "--render-only", *raw],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    page = tmp_path / "performance.md"
    text = page.read_text("utf-8")
    assert not paths_outside(text, ROOT / "docs"), "the page would stand in docs/"
    for line in commands(text):
        assert "--loadgen chatload" not in line, line
        for command in simple_commands(line):
            check(command)
