"""What the Space's events call: `Handlers` holds what every event needs (the loaded models, the run folders, the
limits, each page's newest run) and turns plain arguments into Gradio values, every failure into one line.

`app.py` builds the widgets and wires them to these methods; the work itself is done by the rest of `ddpm.space`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder

from .. import space  # the package (this module is not imported by its __init__: no cycle)
from ..hub import ModelLoadError, one_line
from ..sampling import sample_shape
from ..visualize import save_png
from . import guards
from .limits import Limits

log = logging.getLogger("ddpm.space")
LIVE_FILES_KEPT = 2  # live previews on disk per run: the one shown and the one before it
EXAMPLE_SECONDS = 10.0  # the arrival example of a model: 50 fast steps, as many images (up to 16) as fit in this here
FAST_LABEL = next(label for label, name in space.SAMPLER_LABELS.items() if name == space.FAST_SAMPLER)
HELD_OUT, UPLOADED, DRAWN = "held-out test image", "uploaded image", "your drawing (the drawing tab's canvas)"
CLIPPED = next(label for label, clip in space.CLIP_LABELS.items() if clip)
COPIES_SOURCES = {"new samples for the seed": None, "your last Generate run": "generate", "your last drawing": "drawing"}
_refuse = guards.refuse


def ui_error(e: Exception) -> gr.Error:
    """Every failure reaches the visitor as one line, never a traceback; the log gets the same one line."""
    return _refuse(one_line(e, None))


def refused(e: Exception) -> str:
    """A request refused before it runs: a warning toast and the status line's text, in one line; the outputs
    keep what they show (an error would turn each into a red badge)."""
    text = one_line(e, None)
    log.warning("refused: %s", text)
    gr.Warning(text)
    return f"⚠️ {text}"


def drawn(sketch):
    """The drawing in a Sketchpad's value (its composite) as a plain image; an empty canvas is a ValueError."""
    return space.drawing_image(sketch.get("composite") if isinstance(sketch, dict) else None)


class Handlers:
    """The functions the events call: plain arguments in; out, {view name: value} for the views they change (app.py
    maps each name to its component), or one value for an event with one output; one-line errors."""

    def __init__(self, default_model: str | None, workdir: str | None, allow_local: bool = False, limits: Limits | None = None):
        operator = (default_model,) if default_model and Path(default_model).expanduser().is_dir() else ()
        self.registry = space.ModelRegistry(
            default_model or space.BUNDLED_MODEL, limits or Limits.from_env(), allow_local, operator
        )
        self.startup_note = ""
        name = self.registry.default
        try:
            self.first = self.registry.load(name)
        except ModelLoadError as e:  # a bad MODEL_ID still gives a working Space on the bundled model
            self.startup_note = f"\n\n⚠️ {e} Serving the bundled model instead."
            name = space.display_name(space.BUNDLED_MODEL)
            self.first = self.registry.load(name)
        self.registry.default = self.name = name
        self.dirs = space.WorkDirs(workdir)
        # Gradio copies what a handler returns into its cache and keeps it: unless the operator put that cache
        # elsewhere, it lives in this process's folder (removed with it) and the disk budget covers it
        os.environ.setdefault("GRADIO_TEMP_DIR", str(self.dirs.root / space.WorkDirs.GRADIO))
        limits = self.registry.limits
        self.disk = space.DiskBudget([self.dirs.root, get_upload_folder()], limits.disk_mb * 2**20, limits.disk_age_min * 60)
        self._tidied = 0.0
        self.examples: dict[str, space.Update] = {}
        self._runs: dict[str, int] = {}  # the newest run of each page and kind (see _stream)
        self._finished: dict[str, str] = {}  # each page's last finished run of each kind: its x_0 file
        self._runs_lock = threading.Lock()

    def example(self, name: str, model) -> space.Update:
        """A finished run of the model, made once when it loads: what a visitor sees before any click. It is sized
        to take about EXAMPLE_SECONDS at the model's price (as many images as fit in 50 fast steps; fewer steps for
        a heavy model) and stops at twice that, taking its turns of the network like any run."""
        done = self.examples.get(name)
        if done is not None and Path(done.gif).exists():
            return done
        precision = space.default_precision()
        cost = space.cost_of(model, space.PRECISION_LABELS[precision])
        steps = min(model.scheduler.num_train_timesteps, 50)
        steps = min(steps, max(1, cost.steps_that_fit(1, EXAMPLE_SECONDS)))
        n = max(1, cost.images_that_fit(steps, EXAMPLE_SECONDS))
        settings = space.check_settings(model, 0, n, space.FAST_SAMPLER, steps, 0.0, True, precision)  # x̂0 beside x_t
        folder = self.dirs.example(name)
        limit = min(2 * EXAMPLE_SECONDS, self.registry.limits.max_request_s)
        *_, done = space.generate(model, settings, folder, min_interval=1e9, limit_s=limit)
        save_png(done.preview, folder / "x0.png")
        done.preview = str(folder / "x0.png")
        made = f"{steps} steps" if done.step == done.num_steps else f"stopped at step {done.step} of {steps}"
        done.status = (f"An example, made when this model loaded: {settings.sampler_name}, {made}, {n} image(s), seed 0. "
                       "Press **Generate** for your own.")  # fmt: skip
        self.examples[name] = done
        while len(self.examples) > 16:
            self.examples.pop(next(iter(self.examples)))
        return done

    def current(self, model_name):
        try:
            return self.registry.load(model_name)
        except ModelLoadError as e:
            raise ui_error(e) from None

    def card(self, model) -> str:
        """The model's card in the page: what runs here and how long first, then what the model is."""
        return space.budget_note(model, self.registry.limits) + "\n\n" + space.describe(model)

    # one label for what the live box shows in every state (a label that changed would change the API's values)
    LIVE_LABEL = "x_t live, then x_0 (x̂0 at right when shown)"
    LIVE_ALT = "The run's images: x_t as it goes, x_0 at its end; on arrival, the example run from noise, animated"

    def load_model(self, new_name, model_name) -> dict:
        """Load a model and refresh every view for it (by name: app.py maps each name to its component; a view not
        named keeps what it shows); a failed load changes nothing but the box and the card's last line."""
        new_name = (new_name or "").strip() or self.registry.default
        try:
            model = self.registry.load(new_name)
        except ModelLoadError as e:
            text = one_line(e, None)
            if "(offline)" in text:
                text = f"{space.shown(new_name)} is not on this Space, which cannot reach the Hub: pick a bundled model below"
            log.warning("refused: %s", text)
            gr.Warning(text)
            current = self.registry.load(model_name)
            return {"box": space.display_name(model_name), "card": self.card(current) + f"\n\n⚠️ {text}"}
        T = model.scheduler.num_train_timesteps
        classes = space.held_out_set(model).classes
        figure, report = self.schedule(new_name)
        return {
            "model": new_name,
            "box": new_name,
            "card": self.card(model),
            "steps": gr.Slider(maximum=T, value=min(T, 50)),
            "forward_t": gr.Slider(maximum=T, value=T // 4),
            "class_name": gr.Dropdown(choices=list(classes), value=classes[0]),
            "drawing_t": gr.Slider(maximum=T, value=T // 2),
            "drawing_note": space.strength_note(model, T // 2),
            "drawing_steps": gr.Slider(maximum=T, value=min(T, 50)),
            **self.run_values(example := self.example(new_name, model)),
            "preview": example.gif,  # the example's trajectory, playing
            "schedule": figure,
            "schedule_report": report,
            "estimate": self.estimate(new_name, 16, FAST_LABEL, min(T, 50)),
        }

    @staticmethod
    def run_values(update, scrubber: bool = True) -> dict:
        """What a run shows (preview, status, GIF, gallery, zip; and once it is done the scrubber's frames, slider
        and picture), by view."""
        shown = {"preview": update.preview, "status": update.status, "gif": update.gif,
                 "gallery": update.gallery or None, "download": update.download}  # fmt: skip
        if not scrubber:
            return shown
        if not update.done:
            return shown
        last = len(update.scrub) - 1
        slider = gr.Slider(minimum=0, maximum=last, value=last, step=1, interactive=True)
        return {**shown, "frames": update.scrub, "index": slider, "picture": Handlers.scrub(update.scrub, last)}

    @staticmethod
    def scrub(frames, index):
        """The scrubber: frame `index` of the finished run, x_t beside x̂0, labelled with t and SNR."""
        if not frames:
            return gr.skip()
        path, caption = frames[max(0, min(int(index or 0), len(frames) - 1))]
        return gr.Image(value=path, label=f"x_t | x̂0 · {caption}", alt_text=f"x_t beside the model's x̂0 at {caption}")

    def estimate(self, model_name, num_images, sampler, num_steps, precision=None):
        """About how long a run takes here, from the model's measured cost, before it is asked for."""
        try:
            model = self.registry.load(model_name)
            precision = precision or space.default_precision()
            settings = space.check_settings(model, 0, num_images, sampler, num_steps, 0.0, False, precision)
        except (ModelLoadError, ValueError):
            return ""
        calls, seconds = space.network_calls(model, settings), space.predicted_seconds(model, settings)
        secs = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"
        text = f"About **{secs} s** here for {settings.num_images} image(s) × {calls} steps when no one else generates"
        limit = self.registry.limits.max_request_s
        if seconds > limit:
            return f"{text}: over this Space's {limit:g} s a request, so it will stop there and keep what it made."
        return text + "."

    def generate(
        self, model_name, seed, num_images, sampler, num_steps, eta, show_x0, precision, clip=CLIPPED, request: gr.Request = None
    ):
        """A run streamed: previews with the time left, then the GIF, the frames, the zip and the scrubber."""
        model = self.current(model_name)
        limits = self.registry.limits

        def updates(run):
            settings = space.check_settings(model, seed, num_images, sampler, num_steps, eta, show_x0, precision, limits, clip)
            return space.generate(model, settings, run, limit_s=limits.max_request_s)

        yield from self._stream(updates, request, kind="generate")

    def drawing(self, model_name, sketch, t, sampler, num_steps, seed, precision, clip=CLIPPED, request: gr.Request = None):
        model = self.current(model_name)
        try:
            image = drawn(sketch)
        except ValueError as e:  # an empty canvas: said on the status line; the last run's results stay as they were
            yield {"status": refused(e)}
            return

        def updates(run):
            settings = space.check_settings(model, seed, 1, sampler, num_steps, 0.0, False, precision, clip=clip)
            space.strength_note(model, t)  # checks t
            space.check_work(model, settings, self.registry.limits, start=int(t))  # the steps it runs from t
            return space.from_drawing(model, image, t, settings, run, limit_s=self.registry.limits.max_request_s)

        yield from self._stream(updates, request)

    def strength(self, model_name, t):
        try:
            return space.strength_note(self.current(model_name), t)
        except ValueError as e:
            raise ui_error(e) from None

    @staticmethod
    def _page_key(request, kind: str) -> str:
        """A page's runs of one kind ("generate" or "drawing"): its newest (`_runs`) and last finished (`_finished`)."""
        return f"{getattr(request, 'session_hash', None)}:{kind}"

    def _newest(self, request, kind: str) -> tuple[str, int]:
        """This run's ticket among the visitor's runs of `kind` (a page's Generate, or its drawing): newer runs
        replace older ones."""
        key = self._page_key(request, kind)
        with self._runs_lock:
            ticket = self._runs.pop(key, 0) + 1
            self._runs[key] = ticket
            while len(self._runs) > 4096:
                self._runs.pop(next(iter(self._runs)))
            while len(self._finished) > 4096:
                self._finished.pop(next(iter(self._finished)))
        return key, ticket

    def _stream(self, make_updates, request=None, kind: str = "drawing"):
        """Stream a run's updates (preview file, status, GIF, gallery, zip; the scrubber's when asked) into a run
        folder of the visitor's own; every failure is one line. A second click while a run goes on starts a new run
        and ends this one at its next update, saying so: stop and restart, never ignored."""
        scrubber = kind == "generate"  # Generate's runs end with the scrubber's frames
        key, ticket = self._newest(request, kind)
        self.tidy()
        run = None
        try:
            run = self.dirs.new(guards.client_of_request(request))
            for i, update in enumerate(make_updates(run)):
                if self._runs.get(key) != ticket:
                    yield {"status": "Stopped: you started a new run."}
                    return
                update.preview = self._preview_file(run, i, update)
                if update.samples:  # the run's x_0, for "Is it copying?"
                    self._finished[key] = update.samples
                yield self.run_values(update, scrubber)
        except ValueError as e:  # refused before it ran: the page keeps the last run's results
            yield {"status": refused(e)}
        except Exception as e:  # noqa: BLE001 - a real crash: its traceback to the log, one line to the visitor
            log.exception("generation failed")
            raise ui_error(RuntimeError(f"generation failed ({type(e).__name__}); the server log has the details")) from None
        finally:
            if run is not None:
                self.dirs.finished(run)

    def tidy(self, every_s: float = 2.0) -> None:
        """Keep the Space's files within the disk budget (`space.DiskBudget`), at most every `every_s` seconds."""
        if time.monotonic() - self._tidied >= every_s:
            self._tidied = time.monotonic()
            self.disk.prune(busy=set(self.dirs.busy))

    @staticmethod
    def _preview_file(run: Path, i: int, update) -> str:
        """The live frame as a PNG in the run folder (served from there, not copied to Gradio's cache); only the
        last LIVE_FILES_KEPT stay on disk."""
        path = run / ("x0.png" if update.done else f"live-{i}.png")
        save_png(update.preview, path)
        (run / f"live-{i - LIVE_FILES_KEPT}.png").unlink(missing_ok=True)
        return str(path)

    def _image(self, model, source, class_name, index, upload, sketch=None):
        """x_0 as the model takes it: an upload, the drawing tab's canvas (`sketch`) or a held-out image."""
        if source == UPLOADED:
            image = space.open_upload(upload)
        elif source == DRAWN:
            image = drawn(sketch)
        else:
            image = space.held_out_image(model, class_name, index)
        return space.model_input(model, image)

    def forward(self, model_name, source, class_name, index, upload, t, seed) -> dict:
        model = self.current(model_name)
        self.tidy()
        try:
            x0 = self._image(model, source, class_name, index, upload)
            picture, text = space.forward_view(model, x0, t, seed)
            return {"picture": picture, "text": text, "strip": space.forward_strip(model, x0, seed=seed)}
        except ValueError as e:
            return {"text": refused(e)}

    OBJECTIVE_SECONDS = 10.0  # the loss curve: as many held-out images (up to 8) as its network calls take in this

    def objective(self, model_name, source, class_name, index, upload, t, seed, sketch=None, curve: bool = True) -> dict:
        """Algorithm 1 on one picture at t (x_0, eps, x_t, eps_theta, the error, x̂0 and the numbers), and the
        network's error over t on held-out images (about OBJECTIVE_SECONDS of network calls). x_0 is a held-out
        image, an upload or the drawing tab's canvas (`sketch`)."""
        model = self.current(model_name)
        self.tidy()
        try:
            x0 = self._image(model, source, class_name, index, upload, sketch)
            picture, text = space.objective_view(model, x0, t, seed)
            if not curve:
                return {"picture": picture, "text": text}
            cost = space.cost_of(model, "fp32")
            images = min(8, max(1, cost.images_that_fit(space.objective.CURVE_TIMESTEPS, self.OBJECTIVE_SECONDS)))
            chart, reading = space.loss_over_t(model, space.held_out_batch(model, images), seed)
            return {"picture": picture, "text": text, "chart": chart, "reading": reading}
        except ValueError as e:
            return {"text": refused(e)}

    def copies(self, model_name, source, seed, num_images, steps, request: gr.Request = None) -> dict:
        """Is it copying? New samples for a seed, or the visitor's own last Generate run or drawing, the training
        set's ideal denoiser's and held-out test images, each beside its nearest training images, and what their
        distances say."""
        model = self.current(model_name)
        self.tidy()
        try:
            samples = self._finished_samples(model, source, request)
            pictures, text = space.copies_view(model, seed, num_images, steps, samples=samples)
        except ValueError as e:
            return {"text": refused(e)}
        return {"pictures": pictures, "text": text}

    def _finished_samples(self, model, source, request):
        """The x_0 of the visitor's last finished run of the kind `source` names (None: new samples)."""
        if source not in COPIES_SOURCES:
            raise ValueError(f"compare one of: {', '.join(COPIES_SOURCES)}")
        kind = COPIES_SOURCES[source]
        if kind is None:
            return None
        path = self._finished.get(self._page_key(request, kind))
        if path is None or not Path(path).is_file():
            button = "Generate" if kind == "generate" else "the drawing tab's button"
            raise ValueError(f"no finished run of yours to compare yet: press {button} first, or compare new samples")
        x = torch.from_numpy(np.load(path, allow_pickle=False))
        if tuple(x.shape[1:]) != tuple(sample_shape(model.unet, 1)[1:]):
            raise ValueError("your last run was made by another model: run it again with this one, or compare new samples")
        return x

    def samplers(self, model_name, seed, num_images, steps, eta) -> dict:
        """Every sampler from one x_T, side by side, within the request's limit."""
        model = self.current(model_name)
        self.tidy()
        try:
            pictures, text = space.samplers_view(model, seed, num_images, steps, eta, self.registry.limits.max_request_s)
        except ValueError as e:
            return {"text": refused(e)}
        return {"pictures": pictures, "text": text}

    def objective_at(self, model_name, source, class_name, index, upload, t, seed, sketch=None) -> dict:
        """The one picture again at a new t or seed, without the curve: it answers at once."""
        return self.objective(model_name, source, class_name, index, upload, t, seed, sketch, curve=False)

    @staticmethod
    def upload_shown(source):
        """The upload box, shown only when the visitor picks an uploaded image."""
        return gr.File(visible=source == UPLOADED)

    def schedule(self, model_name):
        model = self.current(model_name)
        return space.schedule_figure(model), space.schedule_report(model)

    def gpu_seconds(self, model_name, images, sampler="ddpm", steps=None, start=None) -> float:
        """How long to hold a ZeroGPU device for a request: twice its `predicted_seconds` (default: all T steps),
        between 10 s and 300 s; 60 s for a request that will be refused anyway."""
        try:
            model = self.registry.load(model_name)
            settings = space.check_settings(model, 0, images, sampler, steps or 1, 0.0, False)
            predicted = space.predicted_seconds(model, settings, None if start is None else int(start))
        except (ModelLoadError, ValueError, TypeError):
            return 60.0
        return float(min(300.0, max(10.0, 2 * predicted)))

    def generate_seconds(self, model_name, seed, num_images, sampler, num_steps, *_, **__):
        return self.gpu_seconds(model_name, num_images, sampler, num_steps)

    def drawing_seconds(self, model_name, sketch, t, sampler, num_steps, *_, **__):
        return self.gpu_seconds(model_name, 1, sampler, num_steps, start=t)

    def likelihood_seconds(self, model_name, source, count, *_, **__):
        return self.gpu_seconds(model_name, count)  # the bound: T network calls, as all T ancestral steps

    def stopped(self):
        return "Stopped. Press **Generate** to start again."

    def likelihood(self, model_name, source, count, upload, seed):
        """The bound, streamed: a progress line about every half second, then the chart; a cancelled request stops
        before its next network call."""
        model = self.current(model_name)
        self.tidy()
        try:
            x0 = space.model_input(model, space.open_upload(upload)) if source == UPLOADED else space.held_out_batch(model, count)
            for chart, text in space.likelihood_view(model, x0, seed, limits=self.registry.limits):
                yield {"text": text} if chart is None else {"chart": chart, "text": text}
        except ValueError as e:
            yield {"text": refused(e)}
