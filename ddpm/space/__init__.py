"""What the Space shows, without Gradio, one concept a module:

- `registry`: which models a visitor may load, the budget check before weights are read, the memory-bounded cache;
- `settings`: a sampling request (seed, images, sampler, steps, eta, precision, clipping), checked;
- `runtime`: per-run output folders, the disk budget, the network behind one lock, the clock that stops a run;
- `stream`: a sampling run streamed as updates (live frame, GIF, gallery, zip), from noise or from a drawing;
- `inputs`: images coming in (held-out test images, uploads, sketches) as model input;
- `views`: the teaching views (forward process, schedule, strength note, the bound term by term);
- `objective`: the training objective on one picture (Algorithm 1); `copies`: samples beside their nearest training
  images, and the training set's ideal denoiser; `samplers`: every sampler from one x_T, side by side.

`app.py` wires these to widgets; everything takes and returns plain Python, tensors and PIL images, so it is tested
directly. Bad input raises `ValueError` (or `ModelLoadError`) with a one-line message for the UI.

Two modules speak Gradio and are imported by `app.py` only (not here): `guards` (inputs bounded and refused in one
line before Gradio decodes them, the request guard in front of its routes) and `handlers` (what the events call).
"""

from .copies import MAX_COPIES_IMAGES, MAX_COPIES_STEPS, copies_view, training_set
from .frames import SNR_IN_WORDS, frame_caption, log_snr, log_snr_frames
from .inputs import (
    MAX_UPLOAD_PIXELS,
    drawing_image,
    held_out_batch,
    held_out_image,
    held_out_order,
    held_out_set,
    image_header,
    model_input,
    open_upload,
)
from .objective import loss_over_t, objective_parts, objective_view
from .registry import (
    ARTICLE_T200_MODEL,
    BUNDLED_MODEL,
    BUNDLED_MODELS,
    DIGITS_MODEL,
    MAX_NAME,
    ROOT,
    ModelRegistry,
    describe,
    display_name,
    parameter_bytes,
    trained_on,
)
from .runtime import DiskBudget, RunClock, Serialized, WorkDirs, on_gpu, pick_device
from .samplers import MAX_SAMPLERS_IMAGES, samplers_view
from .settings import (
    CLIP_LABELS,
    CLIP_NOTE,
    FAST_SAMPLER,
    MAX_IMAGES,
    MAX_SEED,
    PRECISION_LABELS,
    SAMPLER_LABELS,
    Settings,
    budget_note,
    check_settings,
    check_work,
    cost_of,
    default_precision,
    learn_cost,
    network_calls,
    predicted_seconds,
    shown,
    turn_size,
)
from .stream import GALLERY_FRAMES, GIF_FRAMES, Update, from_drawing, generate, picture_scale
from .views import forward_strip, forward_view, likelihood_view, schedule_figure, schedule_report, strength_note

__all__ = [
    "MAX_SAMPLERS_IMAGES",
    "samplers_view",
    "MAX_COPIES_IMAGES",
    "MAX_COPIES_STEPS",
    "copies_view",
    "training_set",
    "ARTICLE_T200_MODEL",
    "BUNDLED_MODEL",
    "BUNDLED_MODELS",
    "CLIP_LABELS",
    "CLIP_NOTE",
    "DIGITS_MODEL",
    "DiskBudget",
    "FAST_SAMPLER",
    "GALLERY_FRAMES",
    "GIF_FRAMES",
    "MAX_IMAGES",
    "MAX_NAME",
    "MAX_SEED",
    "MAX_UPLOAD_PIXELS",
    "ModelRegistry",
    "RunClock",
    "PRECISION_LABELS",
    "ROOT",
    "SAMPLER_LABELS",
    "SNR_IN_WORDS",
    "Serialized",
    "Settings",
    "Update",
    "WorkDirs",
    "budget_note",
    "check_settings",
    "check_work",
    "cost_of",
    "default_precision",
    "learn_cost",
    "turn_size",
    "describe",
    "display_name",
    "drawing_image",
    "forward_strip",
    "loss_over_t",
    "objective_parts",
    "objective_view",
    "forward_view",
    "frame_caption",
    "from_drawing",
    "generate",
    "held_out_batch",
    "held_out_image",
    "held_out_order",
    "held_out_set",
    "image_header",
    "likelihood_view",
    "log_snr",
    "log_snr_frames",
    "model_input",
    "network_calls",
    "on_gpu",
    "open_upload",
    "parameter_bytes",
    "pick_device",
    "picture_scale",
    "predicted_seconds",
    "schedule_figure",
    "schedule_report",
    "shown",
    "strength_note",
    "trained_on",
]
