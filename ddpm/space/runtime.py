"""The server's shared resources: per-run output folders (bounded on disk, removed with their process) and the
network behind one lock (one forward pass at a time on a small CPU)."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path


class WorkDirs:
    """Per-request output folders under one root per server process: each client's latest `per_owner`, and at
    most `keep` in all.

    The root is removed when the process exits, and roots left by processes that no longer run (a killed server)
    are removed when the next one starts: disk use stays bounded across requests and restarts. The owner's PID is
    kept in a file beside the root (`<root>.pid`), not in its name: the root's path is in every file URL a visitor
    gets.
    """

    PREFIX = "ddpm-space-"
    EXAMPLES = "examples"  # one folder per loaded model's arrival example, kept while the process runs

    def __init__(self, root: str | Path | None = None, keep: int = 64, per_owner: int = 4):
        if root is None:
            self.remove_stale()
            root = tempfile.mkdtemp(prefix=self.PREFIX)
            pid_file = Path(f"{root}.pid")
            pid_file.write_text(str(os.getpid()))
            atexit.register(shutil.rmtree, root, True)
            atexit.register(pid_file.unlink, missing_ok=True)
        self.root = Path(root)
        self.keep, self.per_owner = keep, per_owner
        self._lock = threading.Lock()

    @classmethod
    def remove_stale(cls, parent: str | Path | None = None) -> None:
        """Remove the roots whose owner no longer runs (no PID file, or a PID that is gone)."""
        for old in Path(parent or tempfile.gettempdir()).glob(f"{cls.PREFIX}*"):
            if not old.is_dir():
                continue
            pid_file = Path(f"{old}.pid")
            pid = pid_file.read_text().strip() if pid_file.is_file() else ""
            if not pid.isdigit() or not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
                pid_file.unlink(missing_ok=True)

    def new(self, owner: str = "") -> Path:
        """A new run folder for `owner` (a client's address): each owner keeps its `per_owner` latest runs, so one
        visitor's many quick runs never remove another's results while they look at them; beyond `keep` runs in
        all, the oldest go. The folder's name holds a hash of the owner, never the address."""
        tag = hashlib.sha256(owner.encode()).hexdigest()[:12]
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{tag}-"))
            runs = sorted((p for p in self.root.iterdir() if p.name != self.EXAMPLES), key=lambda p: p.stat().st_mtime)
            mine = [p for p in runs if p.name.startswith(f"{tag}-")]
            doomed = mine[: max(0, len(mine) - self.per_owner)]
            rest = [p for p in runs if p not in doomed]
            doomed += rest[: max(0, len(rest) - self.keep)]
            for old in doomed:
                shutil.rmtree(old, ignore_errors=True)
            return path

    def example(self, model_key: str, keep: int = 16) -> Path:
        """The folder of a model's arrival example: not a run (visitors' runs never evict it); the examples of the
        `keep` models loaded last are kept."""
        with self._lock:
            path = self.root / self.EXAMPLES / hashlib.sha256(model_key.encode()).hexdigest()[:16]
            path.mkdir(parents=True, exist_ok=True)
            path.touch()
            others = sorted((p for p in path.parent.iterdir() if p != path), key=lambda p: p.stat().st_mtime)
            for old in others[: max(0, len(others) - keep + 1)]:
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


def pick_device(requested: str | None = None):
    """The device the Space computes on: `requested`, else DDPM_DEVICE ("auto", "cpu", "cuda", "cuda:1", ...),
    else "auto": CUDA when a GPU is visible (a GPU Space, ZeroGPU, a workstation), the CPU otherwise."""
    import torch

    name = (requested or os.environ.get("DDPM_DEVICE") or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"DDPM_DEVICE={name!r} is not a device: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"DDPM_DEVICE={name} but no CUDA device is visible here: use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"DDPM_DEVICE={name}: this app runs on cpu or cuda")
    return device


def on_gpu(fn, duration=None):
    """`fn` as Hugging Face's ZeroGPU wants it: wrapped by `spaces.GPU(duration=...)` (a GPU is attached for each
    call; `duration` may be a function of fn's arguments giving seconds). Off ZeroGPU, and where the `spaces`
    package is missing, `fn` itself: nothing changes."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn, duration=duration)


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
