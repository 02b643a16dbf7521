"""Find Java and Maven, and fetch Kafka's jars with Maven."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ecom.cluster.config import POM_PATH, kafka_version
from ecom.errors import ClusterError, ToolMissing

MIN_JAVA = 17
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def find_java() -> str:
    """Return the java executable to run Kafka with (JAVA_HOME first, then PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        where = f"JAVA_HOME={java_home}" if java_home else "PATH"
        raise ToolMissing(
            f"Java {MIN_JAVA}+ is needed to run Kafka but no java was found on {where}; "
            f"install a JDK {MIN_JAVA}+ (e.g. openjdk-17-jre-headless) or set JAVA_HOME"
        )
    major = java_major_version(java)
    if major < MIN_JAVA:
        raise ToolMissing(f"Kafka needs Java {MIN_JAVA}+, but {java} is Java {major}")
    return java


def java_major_version(java: str) -> int:
    """Return the major version of a java executable (8 for 1.8)."""
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = _JAVA_VERSION.search(result.stderr + result.stdout)
    if match is None:
        raise ToolMissing(f"could not tell the version of {java}: {result.stderr.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_maven() -> str:
    """Return the mvn executable."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissing(
            "Maven is needed to download the Kafka jars but mvn was not found on PATH; "
            "install Maven (e.g. the maven package)"
        )
    return mvn


def jars_ready(lib_dir: Path) -> bool:
    """Tell whether lib_dir holds the jars of the pinned Kafka version."""
    marker = lib_dir / ".complete"
    return marker.is_file() and marker.read_text().strip() == kafka_version()


def ensure_jars(lib_dir: Path, log_path: Path) -> None:
    """Copy Kafka's run-time jars into lib_dir with Maven, unless already there."""
    if jars_ready(lib_dir):
        return
    mvn = find_maven()
    if lib_dir.exists():
        shutil.rmtree(lib_dir)
    lib_dir.mkdir(parents=True)
    command = [
        mvn, "-B", "-q", "-f", str(POM_PATH),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib_dir}", "-DincludeScope=runtime",
    ]  # fmt: skip
    with log_path.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        shutil.rmtree(lib_dir, ignore_errors=True)
        raise ClusterError(
            f"Maven could not fetch the Kafka {kafka_version()} jars "
            f"(exit {result.returncode}); see {log_path}"
        )
    (lib_dir / ".complete").write_text(kafka_version() + "\n")


def java_argfile(arguments: list[str]) -> str:
    """Render arguments for `java @file`: one per line, quoted (a path may hold spaces)."""
    quoted = ('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in arguments)
    return "\n".join(quoted) + "\n"
