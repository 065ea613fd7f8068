"""The server's shared resources: per-run output folders (bounded on disk, removed with their process) and the
network behind one lock (one forward pass at a time on a small CPU)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path


class WorkDirs:
    """Per-request output folders under one root per server process, the oldest removed beyond `keep`.

    The root is removed when the process exits, and roots left by processes that no longer run (a killed server)
    are removed when the next one starts: disk use stays bounded across requests and restarts.
    """

    PREFIX = "ddpm-space-"

    def __init__(self, root: str | Path | None = None, keep: int = 16):
        if root is None:
            self.remove_stale()
            root = tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-")
            atexit.register(shutil.rmtree, root, True)
        self.root = Path(root)
        self.keep = keep
        self._lock = threading.Lock()

    @classmethod
    def remove_stale(cls, parent: str | Path | None = None) -> None:
        for old in Path(parent or tempfile.gettempdir()).glob(f"{cls.PREFIX}*"):
            pid = old.name[len(cls.PREFIX) :].split("-")[0]
            if old.is_dir() and (not pid.isdigit() or not _alive(int(pid))):
                shutil.rmtree(old, ignore_errors=True)

    def new(self) -> Path:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(dir=self.root))
            runs = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
            for old in runs[: max(0, len(runs) - self.keep)]:
                shutil.rmtree(old, ignore_errors=True)
            return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Serialized:
    """The network behind one process-wide lock: one forward pass at a time. Concurrent requests then take turns
    step by step instead of running several thread teams on 2 vCPUs, which slows every one of them many times."""

    lock = threading.Lock()

    def __init__(self, network):
        self.network = network

    def __call__(self, *args, **kwargs):
        with self.lock:
            return self.network(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.network, name)
