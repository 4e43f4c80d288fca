"""The errors that end a scan whichever engine runs it, each reported by ``edgeae scan`` in one line: here, not in
an engine's module, so the command catches them without importing the Ray engine."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The workers (local processes or threads, or Ray actors) cannot load the model: every image would fail the same
    way, so the scan ends (status 2) before any image is recorded as failed for it."""


class ActorsDiedError(RuntimeError):
    """No Ray actor is left to scan: their worker processes died while loading the model, again and again."""


class ClusterLostError(RuntimeError):
    """The Ray cluster's head node (its GCS) stopped answering during the scan: the images finished before are kept
    (status 1, as a worker that died; run the same command again once the cluster is back). ``said``: its line was
    logged already (as an ERROR, when it was found: Ray may block the driver until it ends the process)."""

    def __init__(self, message: str, *, said: bool = False) -> None:
        super().__init__(message)
        self.said = said
