"""Which models the Space serves: the bundled ones, Hub repo ids, the operator's folders; loaded on demand, checked
against the budget before their weights are read, kept while they fit in memory."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from ..hub import LoadedModel, ModelLoadError, load_pipeline
from ..models import count_parameters
from .limits import Limits, OverBudget, check_model
from .runtime import pick_device
from .settings import cost_of, shown

log = logging.getLogger("ddpm.space")
ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = str(ROOT / "pretrained" / "ddpm-fashion")  # the default: Fashion-MNIST 28 px, T = 1000
DIGITS_MODEL = str(ROOT / "pretrained" / "ddpm-digits")  # scikit-learn's 8 px digits, T = 1000 as in Ho et al.
ARTICLE_T200_MODEL = str(ROOT / "pretrained" / "ddpm-digits-t200")  # the same recipe with the article's T = 200
BUNDLED_MODELS = {
    BUNDLED_MODEL: "bundled Fashion-MNIST model (trained on its 60,000 training images)",
    DIGITS_MODEL: "bundled digits model (scikit-learn's 8x8 digits, 1437 training images)",
    ARTICLE_T200_MODEL: "bundled digits model with a short schedule, T = 200",
}


HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
MAX_NAME = 200


class ModelRegistry:
    """The models a Space serves, loaded on demand and kept while their parameters fit in `limits.model_cache_mb`
    (least recently used dropped first; the default model is kept).

    Who may load what: visitors name Hub repo ids (user/name) or the bundled models (by their project-relative
    names); local folders are for the operator (`folders`, e.g. the model given at start) unless `allow_local`
    opts in for local development. A refused name is answered without looking at the disk, so the reply tells
    nothing about the server's files. Every model is checked against `limits` before its weights are read.
    """

    def __init__(self, default: str = BUNDLED_MODEL, limits: Limits | None = None, allow_local: bool = True,
                 folders: tuple[str, ...] = (), device=None):  # fmt: skip
        self.limits = limits or Limits()
        self.device = pick_device(device)  # every model is moved there once, when it loads
        self.allow_local = allow_local
        self.folders = {display_name(str(Path(p).resolve())): str(Path(p).resolve()) for p in (*BUNDLED_MODELS, *folders)}
        self.default = self.name_of(default)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def name_of(self, name: str) -> str:
        """The name a visitor uses for a model: a bundled folder by its project-relative name (so that no reply
        ever holds the install path); anything else as given."""
        resolved = str(Path(name).expanduser().resolve()) if Path(name).expanduser().is_dir() else None
        return display_name(resolved) if resolved in self.folders.values() else name

    def key(self, name: str) -> str | None:
        """The cache key of a name this registry serves (a folder's absolute path, or a repo id), else None. A
        bundled model is named by its project-relative name, not its absolute path."""
        if name in self.folders:
            return self.folders[name]
        if self.allow_local and Path(name).expanduser().is_dir():  # one cache entry per folder, however spelled
            return str(Path(name).expanduser().resolve())
        if HUB_REPO_ID.fullmatch(name) and ".." not in name and "--" not in name:
            return name
        return None

    def is_folder(self, key: str) -> bool:
        return key in self.folders.values() or (self.allow_local and Path(key).is_absolute())

    def load(self, name: str | None) -> LoadedModel:
        """The model `name` (a Hub repo id, a bundled model; empty = default); raises ModelLoadError."""
        name = (name or "").strip() or self.default
        if len(name) > MAX_NAME:
            raise ModelLoadError(f"a model name has at most {MAX_NAME} characters (a Hub repo id is user/name)")
        key = self.key(name)
        if key is None:
            kinds = "a model folder, a bundled model or a Hub repo id" if self.allow_local else "a bundled model or a Hub repo id"
            raise ModelLoadError(f"{shown(name)!r} is not {kinds} (user/name): this Space loads those")
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        local = self.is_folder(key)
        try:
            return self._load_new(name, key, local)
        finally:  # every attempt, a refused one too: the disk keeps the Hub models in use and a bounded rest
            if not local:
                with self._lock:
                    in_memory = set(self._models)
                prune_hub_cache(int(self.limits.hub_cache_mb * 2**20), keep=in_memory)

    def _load_new(self, name: str, key: str, local: bool) -> LoadedModel:
        """Check, load and price a model not in memory (both precisions timed: the price of every request), then
        keep it."""
        cost = {}

        def check(unet_config, scheduler_config, weights_bytes):
            try:
                cost["flops"] = check_model(unet_config, scheduler_config, weights_bytes, self.limits)
            except OverBudget as e:
                raise ModelLoadError(f"{shown(name)} is not served here: {e}") from None

        model = load_pipeline(key, check=check, local=local, device=self.device)
        model.flops_per_step = cost["flops"]
        started = time.perf_counter()
        fp32, bf16 = cost_of(model, "fp32"), cost_of(model, "bf16")
        log.info("loaded %s: one step of one image takes %.1f ms in fp32, %.1f ms in bf16 here (timed in %.1f s)",
                 shown(name), fp32.seconds(1, 1) * 1000, bf16.seconds(1, 1) * 1000, time.perf_counter() - started)  # fmt: skip
        with self._lock:
            self._models[key] = model
            self._models.move_to_end(key)
            self._evict()
        return model

    def _evict(self) -> None:
        budget = self.limits.model_cache_mb * 2**20
        while sum(map(parameter_bytes, self._models.values())) > budget:
            old = next((k for k in self._models if k != self.default), None)
            if old is None or old == next(reversed(self._models)):
                break  # the default, or the model just asked for, stays
            del self._models[old]

    def __contains__(self, name: str) -> bool:
        return (self.key(name) or name) in self._models


def parameter_bytes(model: LoadedModel) -> int:
    return sum(p.numel() * p.element_size() for p in model.unet.parameters())


def display_name(name: str) -> str:
    """A model name as shown in the UI: folders inside the project relative to it."""
    path = Path(name)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else name


PREDICTS = {"epsilon": "the noise ε in it", "sample": "x_0 itself", "v_prediction": "v = √ᾱ_t ε − √(1 − ᾱ_t) x_0"}


def describe(model: LoadedModel) -> str:
    """A short markdown card of the model for the UI."""
    cfg, sched = model.unet.config, model.scheduler
    d = sched.diagnostics()
    name = BUNDLED_MODELS.get(model.source) or f"`{display_name(model.source)}`" + trained_on(model)
    colours = {1: "grey", 3: "colour"}.get(cfg.in_channels, f"{cfg.in_channels} channels")
    predicts = PREDICTS.get(sched.config.prediction_type, sched.config.prediction_type)
    text = (
        f"**{name}**: a UNet (diffusers' `UNet2DModel`, {count_parameters(model.unet) / 1e6:.2f} M parameters) that "
        f"takes a noisy image x_t ({colours}, {cfg.sample_size}x{cfg.sample_size} px) and its t and predicts {predicts}; "
        f"T = {sched.num_train_timesteps} noising steps on a {sched.config.beta_schedule} β schedule."
    )
    return text + (f"\n\n⚠️ {d.warning}" if d.warning else "")


def dataset_name(model: LoadedModel) -> str | None:
    """The data set the model's card says it was trained on (our cards write "trained on **X**"), or None."""
    card = model.path / "README.md"
    found = re.search(r"trained on \*\*([^*\n]{1,80})\*\*", card.read_text(errors="replace")) if card.is_file() else None
    return found[1] if found else None


def trained_on(model: LoadedModel) -> str:
    """ ", trained on X" as its model card says, or nothing."""
    name = dataset_name(model)
    return f", trained on {as_plain_text(name)}" if name else ""


def as_plain_text(text: str) -> str:
    """Text from a model's files, shown as written inside Markdown: every Markdown and HTML character escaped, so
    a card cannot put links, images or markup into the page."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~&])", r"\\\1", text)


def prune_hub_cache(max_bytes: int, keep: Collection[str] = ()) -> int:
    """Delete the least recently used model repos from the Hub cache until the models in it take at most
    `max_bytes`; the repos in `keep` stay (those in use). Returns the bytes freed; 0 when there is no cache."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir()
    except (CacheNotFound, OSError):
        return 0
    models = sorted((r for r in cache.repos if r.repo_type == "model"), key=lambda r: r.last_accessed)
    total = sum(r.size_on_disk for r in models)
    doomed = []
    for repo in models:
        if total <= max_bytes:
            break
        if repo.repo_id not in keep:
            doomed.append(repo)
            total -= repo.size_on_disk
    for repo in doomed:  # by folder: huggingface_hub's delete_revisions matches commit hashes across repos
        shutil.rmtree(repo.repo_path, ignore_errors=True)
    return sum(repo.size_on_disk for repo in doomed)
