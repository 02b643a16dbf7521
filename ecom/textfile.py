"""Text files a user hands the CLI (--from-file, --data @file, --file topics.yaml,
credentials): read whole as UTF-8, or refused in one line saying why (bad input)."""

from __future__ import annotations

from pathlib import Path

from ecom.errors import BadInput


def read_text(path: Path, what: str = "", refusal: type[BadInput] = BadInput) -> str:
    """Return a file's text; raise `refusal` when it cannot be read or is not UTF-8.
    `what` names the file's part in the command (such as --from-file)."""
    label = f"{what} {path}" if what else str(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise refusal(f"cannot read {label}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise refusal(not_utf8(label, error)) from error


def not_utf8(label: str, error: UnicodeDecodeError) -> str:
    return f"{label} is {why_not_utf8(error)}"


def why_not_utf8(error: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte {error.start}: {error.reason})"
