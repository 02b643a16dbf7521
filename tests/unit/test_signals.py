"""SIGTERM cleans up as Ctrl-C does, and a tethered tool dies with its parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO

# A command whose clean-up (a finally) writes a file: the test sees whether it ran.
HOLDER = """
import sys, time, click
from ecom.cli import cli, main
@cli.command("hold")
def hold():
    try:
        print("holding", flush=True)
        time.sleep(60)
    finally:
        open(sys.argv[1], "w").write("cleaned")
sys.argv = ["ecom", "hold"]
main()
"""


def _until(condition: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_sigterm_runs_the_commands_clean_up_and_exits_143(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER.replace("sys.argv[1]", repr(str(marker)))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"  # inside the try: the handler is set
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143
    assert err.strip() == "terminated"
    assert marker.read_text() == "cleaned"


def test_a_tethered_command_dies_with_its_parent() -> None:
    starter = (
        "import subprocess, sys, time\n"
        "from ecom.process import tethered\n"
        "child = subprocess.Popen(tethered(['sleep', '120']))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", starter], cwd=REPO,
                          stdout=subprocess.PIPE, text=True) as parent:  # fmt: skip
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _until(lambda: _command(child).startswith("sleep"))  # exec'd: tether is set
        parent.kill()
    assert _until(lambda: not _command(child) or _zombie(child))


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True
