"""SIGTERM cleans up as Ctrl-C does, and a tethered tool dies with its parent."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

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


def test_a_supervised_worker_waits_for_kafka_and_stops_on_sigterm() -> None:
    """A child of `worker all` restarted during an outage waits (it failed, and five
    failures in a minute made the supervisor stop the whole flow)."""
    command = [sys.executable, "-m", "ecom", "worker", "order", "--bootstrap", "127.0.0.1:1",
               "--metrics-port", "0"]  # fmt: skip
    env = os.environ | {"ECOM_SUPERVISED": "1"}
    with subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) as worker:
        assert worker.stderr is not None
        assert _line_with(worker.stderr, "trying again in 2s", 60)  # the first wait began
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 143


def _line_with(stream: IO[str], text: str, seconds: float) -> bool:
    """Read the stream (unbuffered) until text shows; False at its end or the deadline."""
    deadline, seen = time.monotonic() + seconds, b""
    while (left := deadline - time.monotonic()) > 0:
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return False
            seen += chunk
            if text.encode() in seen:
                return True
    return False


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141() -> None:
    """`ecom simulate --ndjson | head -1`: exit 1 (not in README's table), now 141."""
    command = [sys.executable, "-m", "ecom", "simulate", "--ndjson", "--orders", "20000"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        assert run.stdout is not None
        assert run.stderr is not None
        assert run.stdout.readline().startswith(b'{"type": ')
        run.stdout.close()  # as head -1 does
        assert run.wait(timeout=60) == 141
        assert run.stderr.read() == b""


# Lines on stdout until it breaks, or a broken pipe that is not stdout's; the clean-up
# (a finally) writes a file.
WRITER = """
import os, sys, click
from ecom.cli import cli, main
@cli.command("write")
@click.argument("done")
@click.option("--other-pipe", is_flag=True)
def write(done, other_pipe):
    try:
        if other_pipe:
            read, written = os.pipe()
            os.close(read)
            os.write(written, b"x")
        while True:
            click.echo("line")
    finally:
        open(done, "w").write("cleaned")
sys.argv = ["ecom", "write", *sys.argv[1:]]
main()
"""


def test_a_closed_stdout_cleans_up_and_another_broken_pipe_is_no_closed_stdout(
    tmp_path: Path,
) -> None:
    read, written = os.pipe()
    os.close(read)  # nobody reads stdout
    try:
        closed = subprocess.run(
            [sys.executable, "-c", WRITER, str(tmp_path / "a")],
            cwd=REPO, stdout=written, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(written)
    assert (closed.returncode, closed.stderr) == (141, b"")
    assert (tmp_path / "a").read_text() == "cleaned"
    other = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path / "b"), "--other-pipe"],
        cwd=REPO, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert other.returncode != 141, "stdout was read all along"
    assert (tmp_path / "b").read_text() == "cleaned"
