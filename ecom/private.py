"""Files and folders only their owner may use: passwords, TLS keys, the API keys' digests.

Folders made for such a file are mode 0700 whatever the umask (a folder others may
write to lets them swap the file), and an existing file others may read or write is
tightened to 0600 (the caller says so). SQLite's side files (-wal, -shm, -journal)
take their database's mode, so a database of 0600 keeps them private too.
"""

from __future__ import annotations

import stat
from pathlib import Path

SIDE_FILES = ("-wal", "-shm", "-journal")


def private_folder(folder: Path) -> None:
    """Make folder and its missing parents, each of mode 0700; leave existing ones be."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: theirs to mind
            continue
        made.chmod(0o700)  # mkdir's mode is masked by the umask


def tighten(path: Path) -> list[str]:
    """Take group and other permissions off a file and its SQLite side files (0600);
    return a note for each file that had them."""
    notes = []
    for each in (path, *(path.with_name(path.name + side) for side in SIDE_FILES)):
        try:
            mode = stat.S_IMODE(each.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            each.chmod(0o600)
            notes.append(f"{each} was mode {mode:04o}, open to others: made it 0600")
    return notes
