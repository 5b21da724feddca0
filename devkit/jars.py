"""The Apache Kafka broker's jars, fetched from Maven Central with ``mvn`` (``data/kafka/pom.xml``).

Cached outside the repository, in ``~/.cache/engage-streams/kafka-<version>/libs``; the pom is
package data, so an installed wheel can fetch them too.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "4.1.1"
KAFKA_DATA = Path(__file__).resolve().parent / "data" / "kafka"
"""``pom.xml`` (the broker's jars) and ``log4j2.properties`` (its logging): package data."""


class JarsError(RuntimeError):
    """The jars could not be fetched; the message says why."""


def default_jars_dir(version: str = KAFKA_VERSION) -> Path:
    return Path.home() / ".cache" / "engage-streams" / f"kafka-{version}" / "libs"


def ensure_jars(version: str = KAFKA_VERSION, jars_dir: Path | None = None) -> Path:
    """The directory of the broker's jars, fetched with Maven when missing or outdated.

    A stamp (hash of ``data/kafka/pom.xml`` and the version) marks a complete fetch, so an
    interrupted download or a changed pom is fetched again; concurrent callers wait on a lock.
    """
    target = jars_dir or default_jars_dir(version)
    pom = KAFKA_DATA / "pom.xml"
    if not pom.exists():
        raise JarsError(f"{pom} not found: the package data is incomplete; reinstall")
    stamp = hashlib.sha256(pom.read_bytes() + version.encode()).hexdigest()
    stamp_file = target / ".engage-streams-stamp"
    if _read(stamp_file) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read(stamp_file) == stamp:
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise JarsError("mvn not found: install Maven (scripts/install does)")
        fresh = target.parent / f"{target.name}.new-{os.getpid()}"
        shutil.rmtree(fresh, ignore_errors=True)
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={fresh}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0 or not any(fresh.glob("kafka_2.13-*.jar")):
            shutil.rmtree(fresh, ignore_errors=True)
            raise JarsError(
                f"fetching the Kafka {version} jars with Maven failed (exit {result.returncode})"
                f":\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        (fresh / stamp_file.name).write_text(stamp)
        old = target.parent / f"{target.name}.old-{os.getpid()}"
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
