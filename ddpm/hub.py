"""A trained DDPM on disk and on the Hub, in diffusers' `DDPMPipeline` layout:

    model_index.json
    unet/config.json, unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json      (read by ddpm.DDPMScheduler and diffusers.DDPMScheduler alike)
    README.md                            (model card), samples.png
    held_out.npz                         (optional: a few test images with labels, for the app's views)

Loading accepts safetensors only (no pickles, no remote code) and turns every failure into a `ModelLoadError`
with a one-line message.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .scheduler import DDPMScheduler, _diffusers_version

WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLE_WEIGHTS = ("diffusion_pytorch_model.bin", "pytorch_model.bin", "model.ckpt", "diffusion_pytorch_model.pt")
MODEL_FILES = ["model_index.json", "unet/config.json", f"unet/{WEIGHTS}", "scheduler/scheduler_config.json"]
CARD_TEMPLATE = Path(__file__).with_name("model_card.md")  # the card's words, filled by write_model_card
NOT_MEASURED = "Not measured for this model: `python -m benchmarks` measures the bundled models' sample quality and bound."
UPLOAD_IGNORE = ["checkpoints/*", "checkpoints/**", "logs/*", "logs/**", "**/.tmp-*", "*.tmp"]


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to change."""


@dataclass
class LoadedModel:
    """A loaded DDPM: the network, its scheduler, where it came from. (A Space adds what it learns about it, e.g. its
    price on this machine: see ddpm.space.settings.cost_of.)"""

    unet: object
    scheduler: DDPMScheduler
    source: str
    path: Path


def save_pipeline(output_dir: str | os.PathLike, unet, scheduler: DDPMScheduler) -> Path:
    """Write unet/, scheduler/ and model_index.json so `diffusers.DDPMPipeline.from_pretrained` reads the folder."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    index = {
        "_class_name": "DDPMPipeline",
        "_diffusers_version": _diffusers_version(),
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def one_line(e: BaseException, limit: int | None = 300) -> str:
    """An exception as the one line a user reads: its message's first line (at most `limit` characters), else its
    type's name."""
    text = str(e).strip().splitlines()
    return text[0][:limit] if text else type(e).__name__


CONFIG_PATTERNS = ["model_index.json", "*config.json", "*/*config.json", "README.md", "held_out.npz"]
# The most bytes each small file of a Hub model may have: sizes come from the Hub's file listing before anything
# is downloaded, and are checked again on disk after (the repo could change in between).
SIDE_FILE_BYTES = {"README.md": 512 * 2**10, "held_out.npz": 16 * 2**20}
CONFIG_BYTES = 256 * 2**10
MAX_SIDE_FILES = 16  # files of CONFIG_PATTERNS a repo may have: a DDPMPipeline has 5 (a repo of 400 configs filled the cache)
MAX_LISTED = 10_000  # files a repo's listing may have (read lazily, stopped there)


def _hub_errors(name_or_path: str, revision: str | None):
    """Map huggingface_hub's errors to one-line ModelLoadErrors that name only what was asked for."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    shown = name_or_path if len(name_or_path) <= 80 else name_or_path[:77] + "..."
    return [
        (HFValidationError, f"{shown!r} is not a valid Hub repo id: use the form user/model-name"),
        (GatedRepoError, f"{shown} is gated: accept its terms on the Hub and set HF_TOKEN"),
        (
            RepositoryNotFoundError,
            f"model {shown} was not found on the Hub: check the repo id (or set HF_TOKEN for a private repo)",
        ),
        (RevisionNotFoundError, f"revision {revision!r} of {shown} was not found"),
        (
            LocalEntryNotFoundError,
            f"{shown} is not cached and the Hub cannot be reached (offline): connect, or use a local folder",
        ),
        (EntryNotFoundError, f"{shown} has no unet/{WEIGHTS}"),  # after its subclass LocalEntryNotFoundError
    ]


def _from_hub(name_or_path: str, revision: str | None, call):
    try:
        return call()
    except ModelLoadError:
        raise
    except Exception as e:  # network and server errors too: one line, no paths
        for kind, message in _hub_errors(name_or_path, revision):
            if isinstance(e, kind):
                raise ModelLoadError(message) from None
        raise ModelLoadError(f"could not download {name_or_path[:80]}: {type(e).__name__}") from None


def is_local(name_or_path: str, local: bool | None = None) -> bool:
    """Whether `name_or_path` names a folder on this machine: `local` decides when given (a Space passes False for
    what visitors type, so a repo id never probes the server's disk), else whether such a folder exists."""
    return Path(name_or_path).expanduser().is_dir() if local is None else local


def resolve(name_or_path: str, revision: str | None = None, token: str | None = None, local: bool | None = None) -> Path:
    """A local folder as is; for a Hub repo id, its configs, card and held-out images only (small files), downloaded
    to the local cache: the weights follow in `load_pipeline`, after the budget check."""
    path = Path(name_or_path).expanduser()
    if is_local(name_or_path, local):
        if not path.is_dir():
            raise ModelLoadError(f"{name_or_path} is not a model folder")
        return path
    if local is None and (path.exists() or name_or_path.startswith((".", "/", "~"))):
        raise ModelLoadError(f"{name_or_path} is not a model folder: give a folder in the DDPMPipeline layout or a Hub repo id")
    _check_side_files(name_or_path, _hub_file_sizes(name_or_path, revision, token))
    from huggingface_hub import snapshot_download

    path = Path(
        _from_hub(
            name_or_path,
            revision,
            lambda: snapshot_download(name_or_path, revision=revision, token=token, allow_patterns=CONFIG_PATTERNS),
        )
    )
    _check_side_files(name_or_path, {str(f.relative_to(path)): f.stat().st_size for f in path.rglob("*") if f.is_file()})
    return path


def _hub_file_sizes(name_or_path: str, revision: str | None, token: str | None) -> dict[str, int]:
    """Every file of a Hub repo with its size, from the Hub's listing (nothing downloaded); {} when offline (the
    cache then answers, and holds only files checked when they were downloaded)."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    if constants.HF_HUB_OFFLINE:
        return {}

    def listing() -> dict[str, int]:
        sizes = {}
        try:
            for f in HfApi(token=token).list_repo_tree(name_or_path, revision=revision, recursive=True):
                if getattr(f, "size", None) is not None:
                    sizes[f.path] = f.size
                if len(sizes) > MAX_LISTED:
                    raise ModelLoadError(f"{name_or_path[:80]} has more than {MAX_LISTED} files: this app loads a DDPMPipeline")
        except OfflineModeIsEnabled:
            return {}
        return sizes

    return _from_hub(name_or_path, revision, listing)


def _check_side_files(name_or_path: str, sizes: dict[str, int]) -> None:
    """Refuse a model whose card, held-out images or configs are larger or more than an app reads (one line, no
    download)."""
    side = [name for name in sizes if any(fnmatch.fnmatch(name, pattern) for pattern in CONFIG_PATTERNS)]
    if len(side) > MAX_SIDE_FILES:
        raise ModelLoadError(
            f"{name_or_path[:80]} has {len(side)} config and card files; this app reads at most {MAX_SIDE_FILES} "
            "(a DDPMPipeline has 5)"
        )
    for name, size in sizes.items():
        base = name.rsplit("/", 1)[-1]
        cap = SIDE_FILE_BYTES.get(name) or (CONFIG_BYTES if base.endswith("config.json") or base == "model_index.json" else None)
        if cap is not None and size > cap:
            raise ModelLoadError(
                f"{name_or_path[:80]}: its {name} is {size / 2**20:.1f} MB; this app reads at most {cap / 2**20:.2f} MB"
            )


def _weights_size(name_or_path: str, path: Path, subfolder: str, revision, token, local: bool) -> int | None:
    """Bytes of the safetensors weights, from disk or from the Hub's file metadata (no download); None if absent."""
    file = path / subfolder / WEIGHTS if subfolder else path / WEIGHTS
    if local:
        return file.stat().st_size if file.is_file() else None
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    url = hf_hub_url(name_or_path, f"{subfolder}/{WEIGHTS}" if subfolder else WEIGHTS, revision=revision)

    def size() -> int | None:
        try:
            return get_hf_file_metadata(url, token=token).size
        except EntryNotFoundError as e:  # the repo has no such file (offline is another matter: _from_hub says so)
            if isinstance(e, LocalEntryNotFoundError):
                raise
            return None

    return _from_hub(name_or_path, revision, size)


def _read_json(file: Path, name_or_path: str, what: str) -> dict:
    try:
        value = json.loads(file.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{name_or_path} has no {what}") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"the {what} of {name_or_path} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"the {what} of {name_or_path} is not a JSON object")
    return value


def load_pipeline(
    name_or_path: str,
    revision: str | None = None,
    token: str | None = None,
    device=None,
    check: Callable[[dict, dict, int], None] | None = None,
    local: bool | None = None,
) -> LoadedModel:
    """(UNet2DModel, DDPMScheduler) from a local folder or Hub repo in the DDPMPipeline layout, in eval mode.

    `check(unet_config, scheduler_config, weights_bytes)` runs after the configs and before any weights are read
    or downloaded; it raises ModelLoadError to refuse the model. `local`: see `is_local`.
    """
    from diffusers import UNet2DModel

    local = is_local(name_or_path, local)
    path = resolve(name_or_path, revision, token, local)
    subfolder = "unet" if (path / "unet").is_dir() else ""
    unet_dir = path / subfolder
    if not (unet_dir / "config.json").is_file():
        raise ModelLoadError(f"{name_or_path} is not a DDPM in the diffusers layout: unet/config.json is missing")
    config = _read_json(unet_dir / "config.json", name_or_path, "unet/config.json")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ModelLoadError(f"{name_or_path} holds a {str(config['_class_name'])[:40]}, not an unconditional UNet2DModel")
    sched_dir = path / "scheduler" if (path / "scheduler").is_dir() else path
    sched_config = _read_json(sched_dir / "scheduler_config.json", name_or_path, "scheduler/scheduler_config.json")
    size = _weights_size(name_or_path, path, subfolder, revision, token, local)
    if size is None:
        if any((unet_dir / f).is_file() for f in PICKLE_WEIGHTS):
            raise ModelLoadError(
                f"{name_or_path} has only pickle weights (.bin): this app loads safetensors only; "
                "re-save the model with safe_serialization=True"
            )
        raise ModelLoadError(f"{name_or_path} has no unet/{WEIGHTS}")
    if check is not None:
        check(config, sched_config, size)
    if not local:
        from huggingface_hub import hf_hub_download

        filename = f"{subfolder}/{WEIGHTS}" if subfolder else WEIGHTS
        _from_hub(name_or_path, revision, lambda: hf_hub_download(name_or_path, filename, revision=revision, token=token))
    try:
        unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, low_cpu_mem_usage=False)
    except Exception:
        raise ModelLoadError(f"the weights of {name_or_path} could not be read: the file may be corrupt") from None
    try:
        scheduler = DDPMScheduler.from_config(sched_config)
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"the scheduler of {name_or_path} is not a DDPM scheduler this app runs: {one_line(e)}") from None
    if device is not None:
        unet.to(device)
    unet.eval().requires_grad_(False)
    return LoadedModel(unet=unet, scheduler=scheduler, source=name_or_path, path=path)


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload DDPM",
    run_as_future: bool = False,
):
    """create_repo + upload_folder of the model folder (never checkpoints or logs). Returns the commit (or a Future)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        ignore_patterns=UPLOAD_IGNORE,
        run_as_future=run_as_future,
    )


CITATION = """@inproceedings{ho2020denoising,
  title     = {Denoising Diffusion Probabilistic Models},
  author    = {Ho, Jonathan and Jain, Ajay and Abbeel, Pieter},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {33},
  pages     = {6840--6851},
  year      = {2020}
}"""


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    repo_id: str | None,
    dataset: str,
    training_args: dict,
    final_loss: float | None,
    num_parameters: int,
    resolution: int,
    sample_image: str | None = "samples.png",
    license: str = "mit",
    data_description: str | None = None,
    hub_dataset: str | None = None,
    trained: str | None = None,
    quality: str | None = None,
    ema: bool = True,
    base_model: str | None = None,
) -> Path:
    """README.md through huggingface_hub's `ModelCard`/`ModelCardData` (the Hub's metadata: library, licence, task,
    datasets, `base_model` when fine-tuned from a Hub model), then samples, the data, how it trained, quality, use,
    limits, the arguments (local paths shown by their last part only), citation.

    `data_description`: source, split, count and licence of the data; `trained`: where and how long it trained;
    `quality`: measured figures (markdown), e.g. from benchmarks/; `ema`: whether the weights are the EMA's.
    """
    from huggingface_hub import ModelCard, ModelCardData

    name = repo_id or Path(output_dir).name
    source = repo_id or Path(output_dir).as_posix()  # what the app and diffusers load: the Hub repo, else the folder
    hub_dataset = hub_dataset or (dataset if "/" in dataset else None)
    data = ModelCardData(
        library_name="diffusers",
        license=license,
        pipeline_tag="unconditional-image-generation",
        tags=["pytorch", "diffusers", "unconditional-image-generation", "ddpm", "ddpm-space"],
        datasets=[hub_dataset] if hub_dataset else None,
        base_model=base_model,
    )
    card = ModelCard.from_template(
        data,
        template_path=str(CARD_TEMPLATE),
        name=name,
        source=source,
        dataset=dataset,
        resolution=resolution,
        parameters=f"{num_parameters / 1e6:.2f}",
        weights="Weights are the EMA of the training weights." if ema else "Weights are the training weights (no EMA).",
        tuned=f" Fine-tuned from [{base_model}](https://huggingface.co/{base_model})." if base_model else "",
        loss=f"{final_loss:.4f}" if final_loss is not None else "n/a",
        samples=f"![samples]({sample_image})" if sample_image else "",
        data=data_description or f"`{dataset}`, as given to `train_accelerate.py` (see the arguments below).",
        trained=trained or "See the arguments below; `python train_accelerate.py` with them reproduces the run.",
        quality=quality or NOT_MEASURED,
        arguments="\n".join(f"| `{k}` | `{_shown_arg(k, v)}` |" for k, v in sorted(training_args.items()) if "token" not in k),
        citation=CITATION,
    )
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


LOCAL_PATH_ARGS = ("output_dir", "train_data_dir", "cache_dir", "logging_dir", "data_dir", "resume_from_checkpoint")


def _shown_arg(name: str, value):
    """An argument as a published card shows it: a local path by its last part only (no home folders, no users)."""
    is_local_model = name == "model_config_name_or_path" and value and Path(str(value)).expanduser().exists()
    if value and (name in LOCAL_PATH_ARGS or is_local_model):
        return Path(str(value)).name
    return value
