"""The server's shared resources: per-run output folders (bounded on disk, removed with their process), the disk
budget over them and Gradio's cache, the network behind one lock (one forward pass at a time on a small CPU) and
the clock that stops a run at the request limit."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
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
    GRADIO = "gradio"  # Gradio's cache, where the Space puts it (handlers.py) unless GRADIO_TEMP_DIR says: not a run

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
        self.busy: set[Path] = set()  # runs still being made: never removed, whatever their age or size
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
            runs = sorted(
                (p for p in self.root.iterdir() if p.name not in (self.EXAMPLES, self.GRADIO)), key=lambda p: p.stat().st_mtime
            )
            mine = [p for p in runs if p.name.startswith(f"{tag}-")]
            doomed = mine[: max(0, len(mine) - self.per_owner)]
            rest = [p for p in runs if p not in doomed]
            doomed += rest[: max(0, len(rest) - self.keep)]
            for old in doomed:
                if old not in self.busy:
                    shutil.rmtree(old, ignore_errors=True)
            self.busy.add(path)
            return path

    def finished(self, path: Path) -> None:
        """The run in `path` is made: from now on it may go, oldest first."""
        with self._lock:
            self.busy.discard(path)

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


class DiskBudget:
    """The Space's files on disk — its run folders and Gradio's cache, where Gradio copies what a handler returns
    and keeps it — under `max_bytes` in all, none older than `max_age_s`.

    Each root's entries (a run folder, one of Gradio's hash-named folders) go whole, oldest first (by their newest
    file); a root inside another (Gradio's cache in the run folders' root) is pruned entry by entry as its own.
    Counted but kept whatever the budget: the names in `keep` (the arrival examples every new visitor is shown),
    the paths in `busy` (runs still being made), and entries touched in the last `grace_s` seconds (a result just
    sent, which the browser is about to fetch; an upload a request is about to read)."""

    def __init__(self, roots, max_bytes: float, max_age_s: float, grace_s: float = 10.0, keep=(WorkDirs.EXAMPLES,)):
        self.roots = [Path(r) for r in roots]
        self.max_bytes, self.max_age_s, self.grace_s, self.keep = max_bytes, max_age_s, grace_s, set(keep)
        self._lock = threading.Lock()

    def entries(self) -> list[tuple[float, int, Path]]:
        """(newest mtime, bytes, path) of every entry under the roots, oldest first; a root inside another is
        listed as its own entries, not as one."""
        found = []
        for root in self.roots:
            for entry in root.iterdir() if root.is_dir() else ():
                if entry not in self.roots:
                    found.append((*_newest_and_size(entry), entry))
        return sorted(found, key=lambda e: e[0])

    def prune(self, busy=()) -> int:
        """Remove what is over the age limit, then the oldest entries until the total is within the budget;
        returns the bytes left."""
        with self._lock:
            entries, now = self.entries(), time.time()
            total = sum(size for _, size, _ in entries)
            for mtime, size, path in entries:
                if path.name in self.keep or path in busy or now - mtime < self.grace_s:
                    continue
                if total > self.max_bytes or now - mtime > self.max_age_s:
                    _remove(path)
                    total -= size
            return total


def _newest_and_size(path: Path) -> tuple[float, int]:
    """The newest modification time of anything under `path` (itself included) and its files' bytes."""
    try:
        stat = path.lstat()
    except OSError:
        return 0.0, 0
    if not path.is_dir() or path.is_symlink():
        return stat.st_mtime, stat.st_size
    newest, size = stat.st_mtime, 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            newest, size = max(newest, s.st_mtime), size + s.st_size
    return newest, size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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


class Turns:
    """A lock handed to its waiters in the order they asked. `threading.Lock` is not: a thread that releases it
    and asks again at once mostly gets it back, so a long run (a heavy model's arrival example) held the network
    while another visitor's few steps waited to its end. Here each step waits only for the steps asked before it.
    `acquire(blocking=False)` succeeds only when no one holds or waits (an idle network)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._issued = self._serving = 0  # tickets handed out; the ticket whose turn it is

    def acquire(self, blocking: bool = True) -> bool:
        with self._cond:
            if not blocking and self._issued != self._serving:
                return False
            ticket, self._issued = self._issued, self._issued + 1
            while ticket != self._serving:
                self._cond.wait()
            return True

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Serialized:
    """The network behind one process-wide lock taken in turns (`Turns`): one forward pass at a time. Concurrent
    requests then take turns step by step instead of running several thread teams on 2 vCPUs, which slows every
    one of them many times. A step of more than `max_batch` images is run as several turns, so no one turn holds
    the network long (a heavy model's 16 images would hold it for minutes). One instance per run: it counts the
    run's network calls (a step split into turns is one call) and the seconds it waited for other runs' turns."""

    lock = Turns()

    def __init__(self, network, max_batch: int | None = None):
        self.network, self.max_batch = network, max_batch
        self.calls, self.waited = 0, 0.0

    def __call__(self, x, t, *args, **kwargs):
        self.calls += 1
        n = x.shape[0]
        size = max(1, self.max_batch or n)
        if size >= n:
            return self._turn(x, t, *args, **kwargs)
        import torch

        per_image = getattr(t, "ndim", 0) and t.shape[0] == n  # one timestep for each image, or one for all
        parts = [self._turn(x[i : i + size], t[i : i + size] if per_image else t, *args, **kwargs) for i in range(0, n, size)]
        return torch.cat([p.sample if hasattr(p, "sample") else p for p in parts])

    def _turn(self, *args, **kwargs):
        asked = time.perf_counter()
        with self.lock:
            self.waited += time.perf_counter() - asked
            return self.network(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.network, name)


class RunClock:
    """How long a run has held the server: the seconds since it started less those its network waited for other
    runs' turns. `over()` once they reach `limit_s` (None: never), when the run stops and keeps what it made."""

    def __init__(self, network: Serialized, limit_s: float | None = None):
        self.network, self.limit_s, self.start = network, limit_s, time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.network.waited

    def over(self) -> bool:
        return self.limit_s is not None and self.seconds >= self.limit_s
