"""The Space: watch a DDPM turn noise into images, step by step.

    python app.py                       # the bundled Fashion-MNIST model, offline
    MODEL_ID=user/ddpm-model python app.py   # or --model, a Hub repo id or a local folder
    python app.py --allow-local-models  # local development: the model box also loads folders

UI wiring only: the work is done by `ddpm.space`. `Handlers` holds what every event needs (the loaded models,
the run folders, the limits) and turns every failure into one line; each tab is built by one function.

Facing the internet (every endpoint is callable with gradio_client): visitors load Hub repo ids and the bundled
models, never the server's folders; every model is checked against a budget (ddpm/limits.py, raised by DDPM_*
environment variables) before its weights are read; each request's work is bounded; uploads are capped; the
network runs one forward pass at a time; live previews and results live in run folders that are capped and
removed with the process.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path

import gradio as gr
from PIL import Image

from starlette.middleware import Middleware

from ddpm import space
from ddpm.hub import ModelLoadError
from ddpm.limits import Limits
from ddpm.space import guards

log = logging.getLogger("ddpm.space")
MAX_FILE_BYTES = 10 * 2**20
LIVE_FILES_KEPT = 2  # live previews on disk per run: the one shown and the one before it
TITLE = "DDPM, step by step"
INTRO = """# DDPM, step by step
A Denoising Diffusion Probabilistic Model (Ho et al. 2020) runs the **reverse process** p_θ(x_{t-1} | x_t) from pure
noise x_T ~ N(0, I) down to an image x_0, one step at a time:
x_{t-1} = (x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t)) / √α_t + σ_t z. The scheduler is written from these equations;
the network ε_θ is a diffusers `UNet2DModel`."""
HELD_OUT, UPLOADED = "held-out test image", "uploaded image"
CLIPPED = next(label for label, clip in space.CLIP_LABELS.items() if clip)


_refuse = guards.refuse


def _ui_error(e: Exception) -> gr.Error:
    """Every failure reaches the visitor as one line, never a traceback; the log gets the same one line."""
    return _refuse(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)


def _check_number(component, payload) -> None:
    """API callers can send anything: text or an out-of-range number gets one line (and one log line), not the
    traceback Gradio's own check prints."""
    if payload is None:
        raise _refuse(f"{component.label} needs a value")
    if isinstance(payload, bool) or not isinstance(payload, int | float) or not math.isfinite(payload):
        raise _refuse(f"{component.label} must be a finite number, got {space.shown(str(payload), 30)!r}")
    if component.minimum is not None and payload < component.minimum:
        raise _refuse(f"Value {payload} is less than minimum value {component.minimum}.")
    if component.maximum is not None and payload > component.maximum:
        raise _refuse(f"Value {payload} is greater than maximum value {component.maximum}.")


class Number(gr.Number):
    is_template = True  # drawn by Gradio's own number field

    def preprocess(self, payload):
        _check_number(self, payload)
        return super().preprocess(payload)


class Slider(gr.Slider):
    is_template = True  # drawn by Gradio's own slider

    def preprocess(self, payload):
        _check_number(self, payload)
        return super().preprocess(payload)


class Radio(gr.Radio):
    is_template = True  # drawn by Gradio's own radio buttons

    def preprocess(self, payload):
        values = [value for _, value in self.choices]
        if payload not in values:
            raise _refuse(
                f"Value: {space.shown(str(payload), 40)!r} is not in the list of choices: {', '.join(map(str, values))}"
            )
        return super().preprocess(payload)


class Handlers:
    """The functions the events call: plain arguments in, Gradio values out, one-line errors."""

    def __init__(self, default_model: str | None, workdir: str | None, allow_local: bool = False, limits: Limits | None = None):
        operator = (default_model,) if default_model and Path(default_model).expanduser().is_dir() else ()
        self.registry = space.ModelRegistry(default_model or space.BUNDLED_MODEL, limits or Limits.from_env(), allow_local, operator)
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

    def current(self, model_name):
        try:
            return self.registry.load(model_name)
        except ModelLoadError as e:
            raise _ui_error(e) from None

    def load_model(self, new_name, model_name):
        new_name = (new_name or "").strip() or self.registry.default
        model = self.current(new_name)
        T = model.scheduler.num_train_timesteps
        classes = space.held_out_set(model).classes
        return (
            new_name,
            space.describe(model) + "\n\n" + space.budget_note(model, self.registry.limits),
            gr.Slider(maximum=T, value=min(T, 50)),
            gr.Slider(maximum=T, value=T // 4),
            gr.Dropdown(choices=list(classes), value=classes[0]),
            gr.Slider(maximum=T, value=T // 2),
            space.strength_note(model, T // 2),
            gr.Slider(maximum=T, value=min(T, 50)),
        )

    def generate(
        self, model_name, seed, num_images, sampler, num_steps, eta, show_x0, precision, clip=CLIPPED, request: gr.Request = None
    ):
        model = self.current(model_name)
        limits = self.registry.limits

        def updates(run):
            settings = space.check_settings(model, seed, num_images, sampler, num_steps, eta, show_x0, precision, limits, clip)
            return space.generate(model, settings, run)

        yield from self._stream(updates, request)

    def drawing(self, model_name, sketch, t, sampler, num_steps, seed, precision, clip=CLIPPED, request: gr.Request = None):
        model = self.current(model_name)

        def updates(run):
            image = space.drawing_image((sketch or {}).get("composite") if isinstance(sketch, dict) else None)
            settings = space.check_settings(model, seed, 1, sampler, num_steps, 0.0, False, precision, clip=clip)
            space.strength_note(model, t)  # checks t
            space.check_work(model, settings, self.registry.limits, start=int(t))  # the steps it runs from t
            return space.from_drawing(model, image, t, settings, run)

        yield from self._stream(updates, request)

    def strength(self, model_name, t):
        try:
            return space.strength_note(self.current(model_name), t)
        except ValueError as e:
            raise _ui_error(e) from None

    def _stream(self, make_updates, request=None):
        """Stream a run's updates (preview file, status, GIF, gallery, zip) into a run folder of the visitor's own;
        every failure is one line."""
        try:
            run = self.dirs.new(guards.client_of_request(request))
            for i, update in enumerate(make_updates(run)):
                preview = self._preview_file(run, i, update)
                yield (preview, update.status, update.gif, update.gallery or None, update.download)
        except ValueError as e:
            raise _ui_error(e) from None
        except Exception as e:  # noqa: BLE001 - a real crash: its traceback to the log, one line to the visitor
            log.exception("generation failed")
            raise _ui_error(RuntimeError(f"generation failed ({type(e).__name__}); the server log has the details")) from None

    @staticmethod
    def _preview_file(run: Path, i: int, update) -> str:
        """The live frame as a PNG in the run folder (served from there, not copied to Gradio's cache); only the
        last LIVE_FILES_KEPT stay on disk."""
        path = run / ("x0.png" if update.done else f"live-{i}.png")
        update.preview.save(path)
        (run / f"live-{i - LIVE_FILES_KEPT}.png").unlink(missing_ok=True)
        return str(path)

    def _image(self, model, source, class_name, index, upload):
        image = space.open_upload(upload) if source == UPLOADED else space.held_out_image(model, class_name, index)
        return space.model_input(model, image)

    def forward(self, model_name, source, class_name, index, upload, t, seed):
        model = self.current(model_name)
        try:
            x0 = self._image(model, source, class_name, index, upload)
            picture, text = space.forward_view(model, x0, t, seed)
            return picture, text, space.forward_strip(model, x0, seed=seed)
        except ValueError as e:
            raise _ui_error(e) from None

    def schedule(self, model_name):
        model = self.current(model_name)
        return space.schedule_figure(model), space.schedule_report(model)

    def likelihood(self, model_name, source, count, upload, seed):
        """The bound, streamed: a progress line about every half second, then the chart; a cancelled request stops
        before its next network call."""
        model = self.current(model_name)
        try:
            x0 = space.model_input(model, space.open_upload(upload)) if source == UPLOADED else space.held_out_batch(model, count)
            for chart, text in space.likelihood_view(model, x0, seed, limits=self.registry.limits):
                yield gr.skip() if chart is None else chart, text
        except ValueError as e:
            raise _ui_error(e) from None


def model_row(h: Handlers):
    """The model box, the bundled models one click away, and the model's card."""
    with gr.Row(equal_height=True):
        label = "Model: a Hub repo id (user/name) or a bundled model" + (" or a local folder" if h.registry.allow_local else "")
        box = gr.Textbox(label=label, value=space.display_name(h.name), scale=4, max_length=space.MAX_NAME)
        button = gr.Button("Load model", scale=1)
    label = "Bundled models (offline): Fashion-MNIST 28 px; digits 8 px with T = 1000 and with the article's T = 200"
    bundled = gr.Examples(
        [[space.display_name(p)] for p in space.BUNDLED_MODELS], inputs=[box], label=label, api_visibility="private"
    )
    info = gr.Markdown(space.describe(h.first) + "\n\n" + space.budget_note(h.first, h.registry.limits) + h.startup_note)
    return box, button, bundled, info


def sampler_inputs(T: int):
    """The sampler and its number of steps (the ancestral sampler always walks all T)."""
    return [
        Radio(list(space.SAMPLER_LABELS), value=next(iter(space.SAMPLER_LABELS)), label="Sampler"),
        Slider(1, T, value=min(T, 50), step=1, label="Steps (respaced DDPM and DDIM)"),
    ]


def precision_input():
    return Radio(list(space.PRECISION_LABELS), value=space.default_precision(), label="Network precision")


def clip_input():
    """Clipping of the predicted x_0 (on by default, as in diffusers); the article's unclipped step one click away."""
    return Radio(list(space.CLIP_LABELS), value=CLIPPED, label="Predicted x̂0 at each step", info=space.CLIP_NOTE)


def live_view(hint: str, label: str):
    """The status line and the live frame of a sampling run."""
    return gr.Markdown(hint), gr.Image(label=label, format="png", type="pil", interactive=False, height=320)


def trajectory_views(gif_label: str, gallery_label: str):
    """What a finished run leaves: the GIF, the zip of frames, and the gallery of frames chosen in log-SNR."""
    with gr.Row():
        gif = gr.Image(label=gif_label, type="filepath", interactive=False, height=320)
        download = gr.File(label="Download the GIF and the frames (PNG)", interactive=False)
    gallery = gr.Gallery(label=gallery_label, format="png", columns=6, height="auto", object_fit="contain")
    return gif, download, gallery


def generate_tab(T: int):
    with gr.Tab("Generate"):
        with gr.Row():
            with gr.Column(scale=1):
                inputs = [
                    Number(label="Seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED),
                    Slider(1, space.MAX_IMAGES, value=16, step=1, label="Number of images"),
                    *sampler_inputs(T),
                    Slider(0.0, 1.0, value=0.0, step=0.05, label="DDIM eta (0 = deterministic, 1 = DDPM-like)"),
                    gr.Checkbox(label="Show the predicted x_0 beside x_t", value=False),
                    precision_input(),
                    clip_input(),
                ]
                button = gr.Button("Generate", variant="primary")
            with gr.Column(scale=2):
                status, preview = live_view(
                    "Press **Generate**: x_T is pure noise; each step removes a little of it.", "x_t, live"
                )
        gif, download, gallery = trajectory_views("The whole trajectory, x_T → x_0 (GIF)", "Frames from t = T to t = 0")
    return button, inputs, [preview, status, gif, gallery, download]


def drawing_tab(h: Handlers, T: int):
    with gr.Tab("Your drawing"):
        gr.Markdown(
            "Draw (white on black, like the training images) or upload an image into the canvas. It is noised in one "
            "step by the closed form x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, then the model's reverse process brings it back from t."
        )
        blank = {"background": Image.new("RGB", (280, 280)), "layers": [], "composite": None}
        brush = gr.Brush(colors=["#ffffff", "#a0a0a0"], default_color="#ffffff", color_mode="fixed", default_size=14)
        with gr.Row():
            with gr.Column(scale=1):
                sketch = guards.Sketchpad(value=blank, canvas_size=(280, 280), brush=brush, type="pil", image_mode="RGBA",
                                      sources=["upload"], label="Your drawing (or an uploaded image)")  # fmt: skip
                t = Slider(0, T, value=T // 2, step=1, label="Start the reverse process at t (the strength)")
                note = gr.Markdown(space.strength_note(h.first, T // 2))
                inputs = [
                    sketch,
                    t,
                    *sampler_inputs(T),
                    Number(label="Seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED),
                    precision_input(),
                    clip_input(),
                ]
                button = gr.Button("Noise it to t, then denoise", variant="primary")
            with gr.Column(scale=2):
                status, preview = live_view(
                    "Left: your drawing x_0 · middle: x_t · right: the model's x_0.", "x_0 → x_t → back to x_0"
                )
        gif, download, gallery = trajectory_views("The trajectory from x_t (GIF)", "Frames from t down to 0")
    return button, t, note, inputs, [preview, status, gif, gallery, download]


def image_picker(h: Handlers, held_out_label: str):
    """Held-out test images of the model's data by class, or an upload."""
    classes = list(space.held_out_set(h.first).classes)
    source = Radio([HELD_OUT, UPLOADED], value=HELD_OUT, label="Image")
    # the classes change with the model: space.held_out_image checks the name against the loaded model's classes
    class_name = gr.Dropdown(classes, value=classes[0], label=f"Class of the {held_out_label}", allow_custom_value=True)
    index = Slider(0, 9, value=0, step=1, label="Example of that class")
    upload = gr.File(label="Upload an image", file_types=["image"], type="filepath")
    return source, class_name, index, upload


def forward_tab(h: Handlers, T: int):
    with gr.Tab("Forward process"):
        gr.Markdown("The closed form q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): noise added in one step, for any t.")
        with gr.Row():
            with gr.Column(scale=1):
                source, class_name, index, upload = image_picker(h, "held-out test image")
                t_slider = Slider(0, T, value=T // 4, step=1, label="t")
                noise_seed = Number(label="Noise seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED)
                button = gr.Button("Show x_t")
            with gr.Column(scale=2):
                image = gr.Image(label="x_0 and x_t", format="png", interactive=False)
                text = gr.Markdown()
        strip = gr.Gallery(label="x_t from t = 0 to T, same ε", format="png", columns=9, height="auto")
    return button, [source, class_name, index, upload, t_slider, noise_seed], [image, text, strip]


def schedule_tab():
    with gr.Tab("Noise schedule"):
        gr.Markdown("β_t, ᾱ_t = ∏ α_s and SNR(t) = ᾱ_t / (1 − ᾱ_t) of the loaded model, and how close x_T is to N(0, I).")
        button = gr.Button("Show the schedule")
        outputs = [gr.Plot(label="Schedule"), gr.Markdown()]
    return button, outputs


def likelihood_tab():
    with gr.Tab("Likelihood"):
        gr.Markdown(
            "The bound the article leaves out: −log p(x_0) ≤ L_T + Σ L_{t−1} + L_0, with L_T = KL(q(x_T|x_0) ‖ N(0, I)), "
            "L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t)) and L_0 = −log p_θ(x_0|x_1) over 8-bit bins. "
            "It costs T network evaluations."
        )
        with gr.Row():
            source = Radio(["held-out test images", UPLOADED], value="held-out test images", label="Data")
            count = Slider(1, space.MAX_IMAGES, value=8, step=1, label="Number of held-out images (the classes in turn)")
            upload = gr.File(label="Upload an image", file_types=["image"], type="filepath")
        button = gr.Button("Compute the bound")
        outputs = [gr.Plot(label="Terms of the bound"), gr.Markdown()]
    return button, [source, count, upload], outputs


def build(
    default_model: str | None = None, workdir: str | None = None, allow_local: bool = False, limits: Limits | None = None
) -> gr.Blocks:
    h = Handlers(default_model, workdir, allow_local, limits)
    T = h.first.scheduler.num_train_timesteps
    gr.set_static_paths([str(h.dirs.root)])  # results are served from the capped run folders, never copied
    with gr.Blocks(title=TITLE, delete_cache=(600, 600)) as app:
        model_state = gr.State(h.name)
        gr.Markdown(INTRO)
        box, load_button, bundled, info = model_row(h)
        gen_button, gen_inputs, gen_outputs = generate_tab(T)
        draw_button, draw_t, draw_note, draw_inputs, draw_outputs = drawing_tab(h, T)
        fwd_button, fwd_inputs, fwd_outputs = forward_tab(h, T)
        _, class_name, _, _, t_slider, noise_seed = fwd_inputs
        sched_button, sched_outputs = schedule_tab()
        lk_button, lk_inputs, lk_outputs = likelihood_tab()

        load_inputs = [box, model_state]
        load_outputs = [model_state, info, gen_inputs[3], t_slider, class_name, draw_t, draw_note, draw_inputs[3]]
        # one download or model load at a time; up to 4 generations take turns step by step (space.Serialized), so
        # a new visitor's first frame comes after one step of each running request; the bound runs alone
        loading = {"concurrency_limit": 1, "concurrency_id": "load"}
        load_button.click(h.load_model, load_inputs, load_outputs, api_name="load_model", **loading)
        private = {"api_visibility": "private"}  # UI-only events: the API has one endpoint per action
        box.submit(h.load_model, load_inputs, load_outputs, **loading, **private)  # Enter in the text box
        bundled.load_input_event.then(h.load_model, load_inputs, load_outputs, **loading, **private)  # a bundled example
        sampling = {"concurrency_limit": 4, "concurrency_id": "sampling"}  # Generate and the drawing share the 4
        gen_button.click(h.generate, [model_state, *gen_inputs], gen_outputs, api_name="generate", **sampling)
        draw_button.click(h.drawing, [model_state, *draw_inputs], draw_outputs, api_name="drawing", **sampling)
        draw_t.input(h.strength, [model_state, draw_t], draw_note, **private)
        fwd_button.click(h.forward, [model_state, *fwd_inputs], fwd_outputs, api_name="forward")
        t_slider.release(h.forward, [model_state, *fwd_inputs], fwd_outputs, **private)
        sched_button.click(h.schedule, [model_state], sched_outputs, api_name="schedule")
        lk_button.click(
            h.likelihood, [model_state, *lk_inputs, noise_seed], lk_outputs, api_name="likelihood", concurrency_limit=1
        )
    app.queue(default_concurrency_limit=2, max_size=16)  # a flood is told the queue is full at once
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("MODEL_ID"), help="Hub repo id or local folder (env MODEL_ID)")
    parser.add_argument("--host", default=None, help="address to listen on (env GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (env GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument(
        "--allow-local-models",
        action="store_true",
        default=os.environ.get("DDPM_ALLOW_LOCAL_MODELS") == "1",
        help="let the model box load any folder on this machine (local development; never on a public Space)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limits = Limits.from_env()
    app = build(args.model, allow_local=args.allow_local_models, limits=limits)
    guard = Middleware(
        guards.RequestGuard,
        blocks=app,
        max_upload_bytes=MAX_FILE_BYTES + 2**16,  # the file and its multipart wrapping
        client_upload_bytes=int(limits.client_upload_mb * 2**20),
        per_client=limits.client_requests,
    )
    app.launch(
        server_name=args.host,
        server_port=args.port,
        footer_links=["gradio", "settings"],
        max_file_size=MAX_FILE_BYTES,
        app_kwargs={"middleware": [guard]},
    )


if __name__ == "__main__":
    main()
