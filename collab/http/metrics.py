"""``GET /metrics``: the core's counters in the Prometheus text format, for one server.

The numbers themselves are counted in :mod:`collab.core.metrics` as plain integers;
at scrape time a custom collector (:mod:`collab.http.exposition`, the only importer
of ``prometheus_client``, loaded by the first scrape) turns them into metric families, beside
prometheus_client's process collector (CPU, memory, file descriptors of the
process that answers).

One server may be several processes (``collab serve --workers N``). Then every
process is given the same ``metrics_dir``: each writes its snapshot there
(:meth:`SharedMetrics.write`, every ``metrics_interval`` and once more when it
stops, atomically, as ``<pid>.json``), and whichever process answers a scrape
adds up every file with its own live values (:func:`collab.core.metrics.merge`):
counters over every worker that ever ran, gauges over the live ones (a worker
is live while its process exists and it has not written its last snapshot).
``collab_workers`` says how many processes the answer covers. The parent
process calls :func:`prepare_dir` once and passes the directory to its workers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collab.core import metrics
from collab.http.messages import HttpRequest, HttpResponse
from collab.http.router import Route, exact

if TYPE_CHECKING:
    from collab.http.exposition import Exposition

__all__ = ["PATH", "SharedMetrics", "prepare_dir", "route"]

log = logging.getLogger("collab.metrics")

PATH = "/metrics"
#: The classic text format (generate_latest writes it), which every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Written into every snapshot file beside the metrics.
_PID, _FINAL = "pid", "final"


def prepare_dir(directory: str | os.PathLike[str]) -> Path:
    """Make ``directory`` ready for a new server's workers: created if missing, and
    emptied of the snapshot files an earlier run left (its counts are not ours).
    Call it once, in the parent, before the workers start."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.json"):
        old.unlink(missing_ok=True)
    return path


class SharedMetrics:
    """This process's view of the server's metrics: its own, plus its siblings' files.

    ``directory`` empty: this process reports alone and writes nothing.
    """

    def __init__(self, directory: str = "") -> None:
        self.directory = Path(directory) if directory else None
        self.pid = os.getpid()

    def write(self, final: bool = False) -> None:
        """Write this process's snapshot into the directory (atomically: readers never
        see half a file). ``final`` marks the last one: the process is stopping, its
        gauges no longer count. Never raises: a failed write is logged."""
        if self.directory is None:
            return
        data = {**metrics.snapshot(), _PID: self.pid, _FINAL: final}
        try:
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            os.replace(temporary, self.directory / f"{self.pid}.json")
        except OSError as exc:
            log.warning("could not write metrics into %s: %s", self.directory, exc)

    def collect(self) -> tuple[dict[str, Any], int]:
        """The server's merged snapshot and the number of live processes it covers."""
        live = [metrics.snapshot()]
        dead: list[dict[str, Any]] = []
        if self.directory is not None:
            for path in self.directory.glob("*.json"):
                data = _read(path)
                if data is None or data.get(_PID) == self.pid:
                    continue  # our own file is older than our live values
                (dead if data.get(_FINAL) or not _alive(data.get(_PID)) else live).append(data)
        return metrics.merge(live, dead), len(live)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # gone meanwhile, or not ours
    return data if isinstance(data, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def route(shared: SharedMetrics) -> Route:
    """``GET /metrics``: every core metric of the server, and this process's own
    process metrics (``process_*``)."""
    exposition: Exposition | None = None

    async def scrape(request: HttpRequest) -> HttpResponse:
        nonlocal exposition
        if exposition is None:
            # prometheus_client (~3 MiB) is loaded by the first scrape, not by every server.
            from collab.http.exposition import Exposition

            exposition = Exposition(shared)
        return HttpResponse(200, exposition.render(), CONTENT_TYPE)

    return Route(exact(PATH), frozenset({"GET"}), scrape)
