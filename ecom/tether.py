"""`python -m ecom.tether PARENT_PID COMMAND...`: become COMMAND, and die with PARENT_PID.

For programs that know nothing of ecom (Kafka's Java tools): the kernel's request to send
SIGTERM when the parent dies (PR_SET_PDEATHSIG) survives exec, so a benchmark that is
SIGKILLed leaves no ProducerPerformance behind. Linux only; `ecom.process.tethered`
runs the command as it is elsewhere.
"""

from __future__ import annotations

import os
import sys

from ecom.process import die_with


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    die_with(parent)
    os.execvp(command[0], command)  # noqa: S606 - our own command line, no shell wanted


if __name__ == "__main__":
    main(sys.argv[1:])
