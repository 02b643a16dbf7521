"""Run projection runners as a worker process: one thread per projection, graceful
shutdown on SIGTERM / SIGINT (each runner finishes its batch, so nothing is half-done)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from consumers.projection import Projection
from consumers.runner import ProjectionRunner
from consumers.store import open_store
from ecom.settings import redact
from ecom.topology import Topology

Report = Callable[[str], None]
REPORT_EVERY_S = 10.0


def run_workers(
    projections: list[Projection],
    store_url: str,
    topology: Topology,
    bootstrap: str,
    report: Report,
) -> None:
    """Run the projections until a signal arrives or one of them fails (then re-raise)."""
    runners = [ProjectionRunner(p, open_store(store_url), topology, bootstrap) for p in projections]
    failures: list[BaseException] = []

    def stop_all(*_: object) -> None:
        for runner in runners:
            runner.stop()

    def guarded(runner: ProjectionRunner) -> None:
        try:
            runner.run()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, re-raised there
            failures.append(error)
            stop_all()

    threads = [threading.Thread(target=guarded, args=(r,), name=r.projection.name) for r in runners]
    previous = _install(stop_all)
    try:
        for thread in threads:
            thread.start()
        report(f"running {', '.join(r.projection.name for r in runners)} into {redact(store_url)}")
        _watch(threads, runners, report)
    finally:
        stop_all()
        for thread in threads:
            thread.join()
        _restore(previous)
    if failures:
        raise failures[0]
    report("stopped")


def _watch(
    threads: list[threading.Thread], runners: list[ProjectionRunner], report: Report
) -> None:
    last = time.monotonic()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.2)
        if time.monotonic() - last >= REPORT_EVERY_S:
            last = time.monotonic()
            report(
                ", ".join(f"{r.projection.name} {r.progress.applied:,} applied" for r in runners)
            )


Handler = Callable[[int, FrameType | None], object] | int | None


def _install(stop: Callable[..., None]) -> dict[int, Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(previous: dict[int, Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
