"""Packaging: the wheel ships the adapters and installs plainly; extras are explained.

The adapters' source lives in the top-level ``adapters/`` folder and reaches the
package through the ``chatproto/adapters`` link; these tests prove that both the
editable install (the test environment) and a built wheel import them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests import REPO

from .live_server import env_without

ROOT = REPO


def test_editable_install_imports_every_adapter() -> None:
    code = (
        "import chatproto.adapters.threading, chatproto.adapters.anyio, "
        "chatproto.adapters.gevent; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "ok"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("chatproto-*.whl")
    return built


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "chatproto/__init__.py",
        "chatproto/py.typed",
        "chatproto/vectors/spec.json",
        "chatproto/adapters/__init__.py",
        "chatproto/adapters/threading.py",
        "chatproto/adapters/anyio.py",
        "chatproto/adapters/gevent.py",
        "chatproto/cli/serve.py",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not any(n.startswith(("adapters/", "tests/")) for n in names), "no top-level packages"


def test_wheel_installs_and_imports_adapters(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import chatproto, chatproto.adapters.threading as t, chatproto.adapters.anyio as a; "
        "import chatproto.adapters.gevent as g; "
        "assert chatproto.__file__.startswith(sys.argv[1]), chatproto.__file__; "
        "assert t.__file__.startswith(sys.argv[1]), t.__file__; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("gevent", ["--backend", "gevent"], "chatproto[gevent]"),
        ("anyio", ["--backend", "anyio"], "anyio>=4.0"),
        ("trio", ["--backend", "anyio", "--anyio-backend", "trio"], "chatproto[trio]"),
        ("uvloop", ["--backend", "anyio", "--uvloop"], "chatproto[uvloop]"),
    ],
)
def test_missing_extra_is_one_clear_line(
    module: str, args: list[str], extra: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatproto", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without(module, str(tmp_path)),
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert f"pip install '{extra}'" in result.stderr


def test_bad_arguments_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatproto", "--backend", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# ------------------------------------------- a plain install, as a user does it


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or of the tests."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CHATPROTO_")}


def test_plain_install_serves(wheel: Path, tmp_path: Path) -> None:
    """``pip install chatproto`` with no extras into a fresh venv; ``chatproto-serve`` serves."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    # This environment's pip installs into the new one (``--python``), taking
    # the dependencies from the index pip is configured with, as a user's would.
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_user_env(),
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    run = {"capture_output": True, "text": True, "timeout": 60, "env": _user_env(), "cwd": tmp_path}
    extras = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('gevent', 'trio', 'uvloop', 'prompt_toolkit', 'wsproto', "
            "'prometheus_client') if u.find_spec(m)])",
        ],
        check=True,
        **run,  # type: ignore[call-overload]
    )
    assert extras.stdout.strip() == "[]", "the venv must hold no extra"
    version = subprocess.run(
        [str(bin_dir / "chatproto-serve"), "--version"],
        check=True,
        **run,  # type: ignore[call-overload]
    )
    assert version.stdout.startswith(f"chatproto-serve {_project()['version']} ")
    # --metrics without its extra: one line that says what to install.
    metrics = subprocess.run(
        [str(bin_dir / "chatproto-serve"), "--port", "0", "--metrics", "127.0.0.1:0"],
        check=False,
        **run,  # type: ignore[call-overload]
    )
    assert metrics.returncode == 1
    assert metrics.stderr.strip().splitlines() == [
        "chatproto-serve: --metrics needs prometheus-client, which is not installed; "
        "install it with: pip install 'chatproto[metrics]'"
    ]

    server = subprocess.Popen(
        [str(bin_dir / "chatproto-serve"), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_user_env(),
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert "(backend anyio/asyncio)" in banner, banner + server.stderr.read()  # type: ignore[union-attr]
        port = int(banner.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"LOGIN ann\nPING done\n")
            got = b""
            while not got.endswith(b"PONG done\n"):
                chunk = sock.recv(4096)
                assert chunk, got
                got += chunk
        assert got == b"OK\nPONG done\n"
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
        assert server.returncode == 0, err
        assert "shutting down on SIGINT" in err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_wheel_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = z.read(meta_name).decode()
        licences = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licences, "LICENSE is not in the wheel"
        licence = z.read(licences[0]).decode()
    assert licence.startswith("MIT License\n")
    assert "License-Expression: MIT" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    plain = [r for r in requires if "extra ==" not in r]
    assert [r.split(":", 1)[1].split()[0] for r in plain] == ["anyio>=4.0", "sniffio>=1.3"]
    for extra in ("trio", "uvloop", "gevent", "chat", "bridge", "metrics", "all"):
        assert f"Provides-Extra: {extra}" in meta
    for label in ("Homepage", "Documentation", "Source", "Issues"):
        assert f"Project-URL: {label}, https://" in meta
    low = int(_project()["requires-python"].removeprefix(">=").split(".")[1])
    for minor in range(low, low + 4):
        assert f"Classifier: Programming Language :: Python :: 3.{minor}" in meta


def _pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


def _project() -> dict[str, Any]:
    project: dict[str, Any] = _pyproject()["project"]
    return project


def test_every_package_data_pattern_matches_a_file() -> None:
    """Defect 8: ``web/*`` was packaged, and there is no ``web/``."""
    for package, patterns in _pyproject()["tool"]["setuptools"]["package-data"].items():
        folder = ROOT / package.replace(".", "/")
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"package-data {package}: {pattern} matches nothing"


# ------------------------------------------------------------------- README


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_opens_with_its_title_and_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "# chatproto"
    start = lines.index("```sh")
    assert all(not line.strip() for line in lines[1:start]), "only the title before the commands"
    commands = lines[start + 1 : lines.index("```", start + 1)]
    assert len(commands) == 2, commands
    install, tests = commands
    assert "pip install" in install and install.endswith("chatproto-serve")
    assert tests == "bash .ci/run"


def test_readme_links_work_on_the_package_index() -> None:
    """The index shows the README alone: every link absolute, into this repository's files."""
    source = _project()["urls"]["Source"].rstrip("/")
    links = _LINK.findall((ROOT / "README.md").read_text())
    assert links
    for link in links:
        assert link.startswith(("https://", "#")), f"relative link {link!r}"
        for tree in ("/blob/main/", "/tree/main/"):
            if link.startswith(source + tree):
                path = link.removeprefix(source + tree).split("#")[0]
                assert (ROOT / path).exists(), f"{link} points to no file of the repository"


def test_every_package_is_listed_and_adapters_are_mapped_not_linked() -> None:
    """pyproject.toml lists every package; chatproto.adapters is the top-level adapters/ folder.

    A package missing from the list would be left out of the wheel; a
    symlink would break checkouts on systems without them (issue 14).
    """
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    config = pyproject["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "chatproto").rglob("__init__.py")
    }
    found.add("chatproto.adapters")
    assert set(config["packages"]) == found
    assert config["package-dir"] == {"chatproto.adapters": "adapters"}
    assert not (ROOT / "chatproto" / "adapters").exists()
