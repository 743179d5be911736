"""sipstack/build.sh on a Raspberry Pi (aarch64), planned on this machine: a faked compiler,
kernel and interpreter platform; the script's own key and wheel naming, nothing built."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "sipstack" / "build.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def plan(tmp_path: Path, machine: str | None, kernel: str | None,
         platform: str | None) -> dict[str, str]:
    """--print-plan with gcc -dumpmachine, uname -m and sysconfig's platform faked."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    env = dict(os.environ, CENTRALINO_CACHE=str(tmp_path / "cache"))
    if machine is not None:
        _exe(fake / "gcc", f'#!/bin/sh\n[ "$1" = -dumpmachine ] && echo {machine}\n')
    if kernel is not None:
        _exe(fake / "uname", f'#!/bin/sh\necho {kernel}\n')
    python = sys.executable
    if platform is not None:
        arch = platform.removeprefix("linux-")
        python = str(_exe(fake / "python", f'''#!/bin/sh
exec {sys.executable} -c '
import sys, sysconfig
real = sysconfig.get_config_var
sysconfig.get_platform = lambda: "{platform}"
sysconfig.get_config_var = lambda name: (".cpython-311-{arch}-linux-gnu.so"
                                         if name == "EXT_SUFFIX" else real(name))
exec(sys.stdin.read())' "$@"
'''))
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    env["PYTHON"] = python
    done = subprocess.run(["bash", str(SCRIPT), "--print-plan"], capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_raspberry_pi_os_64_bit(tmp_path: Path) -> None:
    pi = plan(tmp_path, "aarch64-linux-gnu", "aarch64", "linux-aarch64")
    assert pi["machine"] == "aarch64-linux-gnu"
    assert pi["platform"] == "linux_aarch64"
    assert pi["wheel"].endswith("-cp311-cp311-linux_aarch64.whl")
    assert pi["configure"].startswith("--build=aarch64-linux-gnu ")
    assert "--disable-libwebrtc" in pi["configure"]  # its only machine-specific code (SIMD)
    (tmp_path / "here").mkdir()
    here = plan(tmp_path / "here", None, None, None)
    assert pi["key"] != here["key"]  # a Pi's wheel never shadows this machine's in a cache


def test_the_compiler_decides_not_the_kernel(tmp_path: Path) -> None:
    """Raspberry Pi OS 32-bit boots a 64-bit kernel: configure must build for armhf."""
    armhf = plan(tmp_path, "arm-linux-gnueabihf", "aarch64", "linux-armv7l")
    assert armhf["kernel"] == "aarch64"
    assert armhf["configure"].startswith("--build=arm-linux-gnueabihf ")
    assert armhf["wheel"].endswith("-linux_armv7l.whl")


def test_this_machine(tmp_path: Path) -> None:
    here = plan(tmp_path, None, None, None)
    assert here["platform"].startswith("linux_")
    assert here["wheel"].endswith(f"-{here['platform']}.whl")
    assert not here["machine"].startswith("unknown")
