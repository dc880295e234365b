"""Packaging: the built wheel ships the adapters as ``chatproto.adapters``; extras are explained.

The adapters' source lives in the top-level ``adapters/`` folder and reaches the
package through the ``chatproto/adapters`` link; these tests prove that both the
editable install (the test environment) and a built wheel import them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .live_server import env_without

ROOT = Path(__file__).resolve().parent.parent


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
