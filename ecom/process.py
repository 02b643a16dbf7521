"""Child processes of `ecom`: start them, stop them within a deadline, restart them.

Every child runs `python -m ecom ARGS` with its output in a log file (or discarded) and
knows its parent through ECOM_PARENT_PID: on Linux it asks the kernel for SIGTERM when
the parent dies (PR_SET_PDEATHSIG), elsewhere a thread watches for it, so no child
outlives its supervisor, not even a supervisor that was SIGKILLed. `ecom worker all`,
`ecom demo`, the benchmarks and the tests start their processes through `Children`;
`Supervisor` adds restarts with backoff and gives up, naming the child, when one keeps
failing.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any, Self

from ecom.errors import ProcessFailed

LOG = logging.getLogger("ecom.process")
PARENT_ENV = "ECOM_PARENT_PID"
PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 30.0
Report = Callable[[str], None]


def _quiet(_: str) -> None:
    """Report nothing."""


@dataclass(frozen=True)
class Spec:
    """What to run: `python -m ecom ARGS`, with extra environment and a log file (none:
    output discarded, or shared with ours if inherit)."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    cwd: Path | None = None
    inherit: bool = False


@dataclass
class Child:
    """A running (or exited) child process."""

    spec: Spec
    process: subprocess.Popen[bytes]
    output: IO[bytes] | None
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def close_log(self) -> None:
        if self.output is not None:
            self.output.close()
            self.output = None


def spawn(spec: Spec) -> Child:
    """Start one child process."""
    output: IO[bytes] | None = None
    if spec.log is not None:
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        output = spec.log.open("ab")
    env = os.environ | spec.env | {PARENT_ENV: str(os.getpid())}
    stdout: IO[bytes] | int | None = output
    if output is None:
        stdout = None if spec.inherit else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "ecom", *spec.args],
        env=env,
        cwd=spec.cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=None if stdout is None else subprocess.STDOUT,
    )
    return Child(spec, process, output)


def stop(child: Child, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM a child; SIGKILL it if it has not exited after grace seconds."""
    if child.alive():
        child.process.send_signal(signal.SIGTERM)
    try:
        code = child.process.wait(grace)
    except subprocess.TimeoutExpired:
        LOG.warning("%s (pid %d) did not stop within %.0fs; killed it", child.spec.name,
                    child.pid, grace)  # fmt: skip
        child.process.kill()
        code = child.process.wait(10)
    child.close_log()
    return code


def wait(child: Child, timeout: float) -> int:
    """Wait for a child to exit by itself; return its exit code."""
    code = child.process.wait(timeout)
    child.close_log()
    return code


def kill(child: Child) -> int:
    """SIGKILL a child, as a crash would; return its exit code."""
    child.process.kill()
    code = child.process.wait(30)
    child.close_log()
    return code


class Children:
    """Named child processes, all stopped when the block ends."""

    def __init__(self, report: Report = _quiet) -> None:
        self.report = report
        self.running: dict[str, Child] = {}

    def start(self, spec: Spec) -> Child:
        child = spawn(spec)
        self.running[spec.name] = child
        return child

    def stop(self, name: str, grace: float = STOP_GRACE_S) -> int:
        return stop(self.running.pop(name), grace)

    def kill(self, name: str) -> int:
        return kill(self.running.pop(name))

    def alive(self, name: str) -> bool:
        child = self.running.get(name)
        return child is not None and child.alive()

    def exited(self) -> Child | None:
        """The first child (in start order) that is no longer running, if any."""
        return next((child for child in self.running.values() if not child.alive()), None)

    def stop_all(self, grace: float = STOP_GRACE_S) -> dict[str, int]:
        """SIGTERM every child at once, then wait for each (SIGKILL after grace)."""
        children, self.running = self.running, {}
        for child in children.values():
            if child.alive():
                child.process.send_signal(signal.SIGTERM)
        return {name: stop(child, grace) for name, child in children.items()}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()


@dataclass
class RestartPolicy:
    """How a supervisor restarts: backoff doubling up to a cap; give up after
    `max_failures` failures within `window_s`."""

    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_failures: int = 5
    window_s: float = 60.0


class Supervisor(Children):
    """Children that are restarted when they die, until one keeps failing."""

    def __init__(self, report: Report = _quiet, policy: RestartPolicy | None = None) -> None:
        super().__init__(report)
        self.policy = policy or RestartPolicy()
        self.restarts: dict[str, int] = {}
        self.reasons: dict[str, dict[str, int]] = {}  # name -> exit reason -> restarts
        self._failures: dict[str, list[float]] = {}
        self._due: dict[str, tuple[float, Spec]] = {}

    def check(self) -> None:
        """Restart children that died (after their backoff); raise ProcessFailed when one
        failed too often. Call it in the supervisor's loop."""
        now = time.monotonic()
        for name, child in list(self.running.items()):
            code = child.process.poll()
            if code is None:
                continue
            child.close_log()
            del self.running[name]
            self._failed(name, child, code, now)
        for name, (due, spec) in list(self._due.items()):
            if now >= due:
                del self._due[name]
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.start(spec)
                self.report(f"restarted {name} (restart {self.restarts[name]})")

    def _failed(self, name: str, child: Child, code: int, now: float) -> None:
        policy = self.policy
        recent = [t for t in self._failures.get(name, []) if now - t < policy.window_s]
        recent.append(now)
        self._failures[name] = recent
        where = f"; see {child.spec.log}" if child.spec.log else ""
        if len(recent) >= policy.max_failures:
            raise ProcessFailed(
                f"{name} exited {len(recent)} times within {policy.window_s:.0f}s "
                f"(last exit code {code}); gave up{where}"
            )
        backoff = min(policy.max_backoff_s, policy.first_backoff_s * 2 ** (len(recent) - 1))
        reason = exit_reason(code)
        self.report(
            f"{name} exited with code {code} ({reason}); restarting in {backoff:.0f}s{where}"
        )
        reasons = self.reasons.setdefault(name, {})
        reasons[reason] = reasons.get(reason, 0) + 1
        # The child counts its own restarts from this, so its counter never goes back.
        env = {**child.spec.env, RESTARTS_ENV: json.dumps(reasons)}
        self._due[name] = (now + backoff, replace(child.spec, env=env))


RESTARTS_ENV = "ECOM_RESTARTS"
EXIT_REASONS = {
    75: "delivery-unacknowledged",
    70: "internal-error",
    1: "error",
    128 + signal.SIGTERM: "signal-sigterm",  # `ecom` stops on SIGTERM with exit 143
}


def exit_reason(code: int) -> str:
    """Name why a child exited, for a bounded metric label."""
    if code < 0:
        try:
            return f"signal-{signal.Signals(-code).name.lower()}"
        except ValueError:
            return f"signal-{-code}"
    return EXIT_REASONS.get(code, f"exit-{code}")


def restarts_so_far() -> dict[str, int]:
    """Return why this process's supervisor restarted it so far (reason -> times)."""
    try:
        counts = json.loads(os.environ.get(RESTARTS_ENV, "{}"))
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {}


@contextlib.contextmanager
def on_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Call handler on SIGTERM and SIGINT within the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(_: int, __: FrameType | None) -> None:
        handler()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_SLOTS: list[int] = []  # lock files held for the life of the process


def instance_id(folder: Path, name: str, host: str) -> str:
    """Return a static consumer instance id for `name` on this host, `<name>-<host>-<slot>`,
    its slot held until this process exits (a restarted process gets its id back)."""
    descriptor, slot = _lock_slot(folder, name)
    _SLOTS.append(descriptor)
    return f"{name}-{host}-{slot}"


@contextlib.contextmanager
def held_instance_id(folder: Path, name: str, host: str) -> Iterator[str]:
    """Like instance_id, but give the slot back on exit (for consumers that end before
    their process does)."""
    descriptor, slot = _lock_slot(folder, name)
    try:
        yield f"{name}-{host}-{slot}"
    finally:
        os.close(descriptor)


def claim_slot(folder: Path, name: str) -> int:
    """Return the lowest instance number of `name` no other holder on this host has, and
    hold it until this process exits."""
    descriptor, slot = _lock_slot(folder, name)
    _SLOTS.append(descriptor)
    return slot


def _lock_slot(folder: Path, name: str) -> tuple[int, int]:
    folder.mkdir(parents=True, exist_ok=True)
    for slot in itertools.count():
        descriptor = os.open(folder / f"{name}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        return descriptor, slot
    raise AssertionError("unreachable")


def adopt_parent() -> None:
    """In a child of ours: get SIGTERM when the parent dies (call it at start-up)."""
    expected = os.environ.pop(PARENT_ENV, None)  # not for our own children
    if not expected or not expected.isdigit():
        return
    die_with(int(expected))


def die_with(parent: int) -> None:
    """Get SIGTERM when the process `parent` dies (in a child it started)."""
    if sys.platform.startswith("linux"):
        libc: Any = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def tethered(command: list[str]) -> list[str]:
    """Return command run so that it dies with this process (see ecom.tether)."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-m", "ecom.tether", str(os.getpid()), *command]


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
