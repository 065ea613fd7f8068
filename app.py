"""The Space: watch a DDPM turn noise into images, step by step.

    python app.py                       # the bundled Fashion-MNIST model, offline
    MODEL_ID=user/ddpm-model python app.py   # or --model, a Hub repo id or a local folder
    python app.py --allow-local-models  # local development: the model box also loads folders

UI wiring only: each tab is built by one function and wired to `ddpm.space.handlers.Handlers` (what every event
needs: the loaded models, the run folders, the limits; every failure one line); the inputs' one-line refusals and the
request guard in front of Gradio are `ddpm.space.guards`; the work itself is the rest of `ddpm.space`.

Facing the internet (every endpoint is callable with gradio_client): visitors load Hub repo ids and the bundled
models, never the server's folders; every model is checked against a budget (ddpm/space/limits.py, raised by DDPM_*
environment variables) before its weights are read; each request's work is bounded; uploads are capped; the
network runs one forward pass at a time; live previews and results live in run folders that are capped and
removed with the process.
"""

from __future__ import annotations

try:  # ZeroGPU: `spaces` must come before torch sets CUDA up; elsewhere its GPU decorator changes nothing
    import spaces  # noqa: F401
except ImportError:
    pass

import argparse
import functools
import inspect
import logging
import os

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from ddpm import space
from ddpm.space import guards
from ddpm.space.guards import CheckedNumber, CheckedRadio, CheckedSlider
from ddpm.space.handlers import CLIPPED, COPIES_SOURCES, DRAWN, FAST_LABEL, HELD_OUT, UPLOADED, Handlers
from ddpm.space.limits import Limits

log = logging.getLogger("ddpm.space")
MAX_FILE_BYTES = 10 * 2**20
TITLE = "DDPM, step by step"
INTRO = """# DDPM, step by step
A diffusion model ([Ho et al. 2020](https://arxiv.org/abs/2006.11239)) turns pure noise into an image, one small
denoising step at a time: watch it below, then press **Generate** for your own."""
EQUATIONS = r"""The **reverse process** $p_\theta(x_{t-1} \mid x_t)$ starts from pure noise $x_T \sim \mathcal{N}(0, I)$; each
step removes the noise the network $\epsilon_\theta$ (a diffusers `UNet2DModel`) predicts in $x_t$:

$$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z$$

The scheduler is written from these equations. A gentle walk through the maths:
[The Annotated Diffusion Model](https://huggingface.co/blog/annotated-diffusion)."""
CSS = """
.ddpm-frames .grid-container { grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)) !important;
                               grid-template-rows: none !important; grid-auto-rows: auto !important; }
.ddpm-frames .fixed-height { min-height: 0 !important; max-height: none !important; }
.ddpm-frames:has(.preview) .fixed-height { min-height: min(520px, 85vh) !important; }
.ddpm-frames .caption-label { opacity: 1; white-space: normal; text-overflow: clip; max-width: 100%; font-size: 11px; }
@media (max-width: 640px) { .ddpm-live { order: -1; } .ddpm-model { order: 1; }
  .ddpm-wide { overflow-x: auto; } .ddpm-wide * { justify-content: flex-start !important; align-items: flex-start !important; }
  .ddpm-wide img { width: 680px; max-width: none; } }
"""  # galleries wrap to the width they get (a phone shows 3 a row, not 6 cut off), a frame clicked opens large, and
# captions wrap instead of being cut, in full contrast; a phone shows the live view first, and a wide chart at a
# readable size that scrolls sideways
# text at 4.5:1 or more against its background (WCAG AA): Gradio's defaults put white on orange (2.8:1), white on
# red (3.8:1) and the slider's ends, the footer and the selected tab in light grey or orange on white (1.9:1, 2.8:1)
THEME = gr.themes.Default().set(
    body_text_color_subdued="*neutral_600",
    color_accent="*primary_700",
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover_dark="*primary_800",
    button_cancel_background_fill="#b91c1c",
    button_cancel_background_fill_hover="#991b1b",
    button_cancel_background_fill_dark="#b91c1c",
    button_cancel_background_fill_hover_dark="#991b1b",
)
# Generate is the first stop of the keyboard's Tab key (then the page in order): a keyboard user runs the model
# with one Tab and Enter, not after the model box, its examples and the card
FIRST_TAB = """() => { const first = () => { const b = document.querySelector('#ddpm-generate');
  if (b) b.tabIndex = 1; return Boolean(b); };
  if (!first()) { const seen = new MutationObserver(() => first() && seen.disconnect());
    seen.observe(document.body, {childList: true, subtree: true}); } }"""
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]  # math as math
# after a click on Generate, the live view is brought into view when it is below the screen's upper part (a phone)
SHOW = """() => {{ const live = document.querySelector('{}');
  if (live && live.getBoundingClientRect().top > window.innerHeight * 0.6) live.scrollIntoView({{block: 'start'}}); }}"""


def model_row(h: Handlers):
    """The model box, the bundled models one click away, the model's card and the equations (on a phone, after the
    tabs: the first screen is for the model at work)."""
    with gr.Column(elem_classes=["ddpm-model"]):
        with gr.Row(equal_height=True):
            label = "Model: a Hub repo id (user/name) or a bundled model"
            label += " or a local folder" if h.registry.allow_local else ""
            box = gr.Textbox(label=label, value=space.display_name(h.name), scale=4, max_length=space.MAX_NAME, min_width=180)
            button = gr.Button("Load model", scale=1, min_width=90)  # beside the box on a phone too
        label = "Bundled models (offline): Fashion-MNIST 28 px; digits 8 px with T = 1000, and with a short T = 200"
        bundled = gr.Examples(
            [[space.display_name(p)] for p in space.BUNDLED_MODELS], inputs=[box], label=label, api_visibility="private"
        )
        with gr.Accordion("This model, and how long a run takes here", open=False):
            info = gr.Markdown(h.card(h.first) + h.startup_note)
        with gr.Accordion("The reverse process, in equations", open=False):
            gr.Markdown(EQUATIONS, latex_delimiters=LATEX)
    return box, button, bundled, info


def sampler_inputs(T: int):
    """The sampler (DPM-Solver++ 2M by default: DDIM's 50 network calls, second order) and its number of steps
    (ancestral walks all T)."""
    return [
        CheckedRadio(list(space.SAMPLER_LABELS), value=FAST_LABEL, label="Sampler"),
        CheckedSlider(1, T, value=min(T, 50), step=1, label="Steps (all but ancestral)"),
    ]


def precision_input():
    return CheckedRadio(list(space.PRECISION_LABELS), value=space.default_precision(), label="Network precision")


def clip_input():
    """Clipping of the predicted x_0 (on by default, as in diffusers); the paper's unclipped step one click away."""
    return CheckedRadio(list(space.CLIP_LABELS), value=CLIPPED, label="Predicted x̂0 at each step", info=space.CLIP_NOTE)


def live_view(hint: str, label: str, value=None, alt: str = "the run's current images"):
    """The status line and the live frame of a sampling run (its label and alt text say what it shows now)."""
    status = gr.Markdown(hint)
    return status, gr.Image(value=value, label=label, format="png", type="pil", interactive=False, height=320, alt_text=alt)


def trajectory_views(gif_label: str, gallery_label: str, shown=None):
    """What a finished run leaves: the GIF, the zip of frames, and the gallery of frames chosen in log-SNR."""
    gif_value, gallery_value, download_value = shown or (None, None, None)
    with gr.Row():
        gif = gr.Image(value=gif_value, label=gif_label, type="filepath", interactive=False, height=320,
                       alt_text="Animation of the run: x_t down to x_0, each frame with its t and SNR")  # fmt: skip
        download = gr.File(value=download_value, label="Download the GIF and the frames (PNG)", interactive=False)
    gallery = gr.Gallery(value=gallery_value, label=gallery_label, format="png", columns=6, height="auto",
                         object_fit="contain", elem_classes=["ddpm-frames"])  # fmt: skip
    gr.Markdown(f"<small>{space.SNR_IN_WORDS}.</small>")
    return gif, download, gallery


def scrubber(example):
    """A slider over the finished run's frames: x_t beside the model's x̂0 at that step, labelled with t and SNR."""
    frames = gr.State(example.scrub)
    last = max(len(example.scrub) - 1, 0)
    with gr.Row():
        index = gr.Slider(0, max(last, 1), value=last, step=1, label="Scrub through the run: frame", scale=1)
        path, caption = example.scrub[last] if example.scrub else (None, "")
        picture = gr.Image(value=path, label=f"x_t | x̂0 · {caption}", type="filepath", interactive=False, height=300, scale=2,
                           alt_text=f"x_t beside the model's x̂0 at {caption}")  # fmt: skip
    return frames, index, picture


def generate_tab(h: Handlers, T: int):
    example = h.example(h.name, h.first)
    with gr.Tab("Generate"):
        with gr.Row():  # first in the tab, on one line: in view on a laptop and a phone without scrolling
            button = gr.Button("Generate", variant="primary", scale=2, min_width=120, elem_id="ddpm-generate")
            stop = gr.Button("Stop", variant="stop", scale=1, min_width=70)
        estimate = gr.Markdown(h.estimate(h.name, 16, FAST_LABEL, min(T, 50)))
        with gr.Row():
            with gr.Column(scale=1):
                inputs = [
                    CheckedNumber(label="Seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED),
                    CheckedSlider(1, space.MAX_IMAGES, value=16, step=1, label="Number of images"),
                    *sampler_inputs(T),
                ]
                with gr.Accordion("More: DDIM's eta, x̂0 beside x_t, precision, clipping", open=False):
                    inputs += [
                        CheckedSlider(0.0, 1.0, value=0.0, step=0.05, label="DDIM eta (0 = deterministic, 1 = DDPM-like)"),
                        gr.Checkbox(label="Show the predicted x̂0 beside x_t", value=False),
                        precision_input(),
                        clip_input(),
                    ]
            with gr.Column(scale=2, elem_classes=["ddpm-live"]):  # on arrival: the example's trajectory, playing
                status, preview = live_view(example.status, h.LIVE_LABEL, example.gif, h.LIVE_ALT)
        gif, download, gallery = trajectory_views(
            "The whole trajectory, x_T → x_0 (GIF)",
            "Frames from t = T to t = 0",
            (example.gif, example.gallery, example.download),
        )
        frames, index, picture = scrubber(example)
    views = {"preview": preview, "status": status, "gif": gif, "gallery": gallery, "download": download,
             "frames": frames, "index": index, "picture": picture}  # fmt: skip
    return button, stop, inputs, views, estimate


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
                with gr.Row():  # right under the canvas: the result beside it stays in view after the click
                    button = gr.Button("Noise it to t, then denoise", variant="primary", scale=2, min_width=160)
                    stop = gr.Button("Stop", variant="stop", scale=1, min_width=70)
                t = CheckedSlider(0, T, value=T // 2, step=1, label="Start the reverse process at t (the strength)")
                note = gr.Markdown(space.strength_note(h.first, T // 2))
                with gr.Accordion("More: sampler, seed, precision, clipping", open=False):
                    inputs = [
                        sketch,
                        t,
                        *sampler_inputs(T),
                        CheckedNumber(label="Seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED),
                        precision_input(),
                        clip_input(),
                    ]
            with gr.Column(scale=2, elem_classes=["ddpm-drawing-live"]):
                status, preview = live_view(
                    "Left: your drawing x_0 · middle: x_t · right: the model's x_0.",
                    "x_0 → x_t → back to x_0",
                    alt="your drawing x_0, the same noised to x_t, and the model's x_0 brought back from it",
                )
        gif, download, gallery = trajectory_views("The trajectory from x_t (GIF)", "Frames from t down to 0")
    return (
        button,
        stop,
        t,
        note,
        inputs,
        {"preview": preview, "status": status, "gif": gif, "gallery": gallery, "download": download},
    )


def image_picker(h: Handlers, held_out_label: str, drawn: bool = False):
    """Held-out test images of the model's data by class, or an upload (or the drawing tab's canvas, `drawn`)."""
    classes = list(space.held_out_set(h.first).classes)
    source = CheckedRadio([HELD_OUT, UPLOADED, *([DRAWN] if drawn else [])], value=HELD_OUT, label="Image")
    # the classes change with the model: space.held_out_image checks the name against the loaded model's classes
    class_name = gr.Dropdown(classes, value=classes[0], label=f"Class of the {held_out_label}", allow_custom_value=True)
    index = CheckedSlider(0, 9, value=0, step=1, label="Example of that class")
    upload = gr.File(label="Upload an image", file_types=["image"], type="filepath", visible=False)  # when chosen
    return source, class_name, index, upload


def forward_tab(h: Handlers, T: int):
    with gr.Tab("Forward process"):
        gr.Markdown("The closed form q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): noise added in one step, for any t.")
        with gr.Row():
            with gr.Column(scale=1):
                source, class_name, index, upload = image_picker(h, "held-out test image")
                t_slider = CheckedSlider(0, T, value=T // 4, step=1, label="t")
                noise_seed = CheckedNumber(label="Noise seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED)
                button = gr.Button("Show x_t")
            with gr.Column(scale=2):
                # it opens on the first held-out image at t = T/4
                shown = h.forward(h.name, HELD_OUT, space.held_out_set(h.first).classes[0], 0, None, T // 4, 0)
                image = gr.Image(shown.get("picture"), label="x_0 and x_t", format="png", interactive=False,
                                 alt_text="x_0 beside x_t, noised to t")  # fmt: skip
                text = gr.Markdown(shown.get("text", ""))
        strip = gr.Gallery(shown.get("strip"), label="x_t from t = 0 to T, same ε, evenly in log-SNR", format="png",
                           columns=9, height="auto", elem_classes=["ddpm-frames"])  # fmt: skip
    return button, [source, class_name, index, upload, t_slider, noise_seed], {"picture": image, "text": text, "strip": strip}


def objective_tab(h: Handlers, T: int, sketch):
    """Algorithm 1 on one picture: what the network is trained on at one t, and its error over all t."""
    with gr.Tab("Training objective"):
        gr.Markdown(
            r"Training (Algorithm 1) noises $x_0$ to $x_t$ with a known $\epsilon$ and asks the network for it back: "
            r"$L_{simple} = \mathbb{E}_{t, x_0, \epsilon}\,\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + "
            r"\sqrt{1-\bar\alpha_t}\,\epsilon,\ t)\|^2$ with $t$ uniform. Below, one such example, and the error over $t$.",
            latex_delimiters=LATEX,
        )
        with gr.Row():
            with gr.Column(scale=1):
                source, class_name, index, upload = image_picker(h, "held-out test image", drawn=True)
                t = CheckedSlider(1, T, value=max(1, T * 3 // 10), step=1, label="t of the training example")
                seed = CheckedNumber(
                    label="Noise seed of the training example", value=0, precision=0, minimum=0, maximum=space.MAX_SEED
                )
                button = gr.Button("Show the training example and the error over t")
            with gr.Column(scale=2):
                alt = "a training example: x_0, the noise, x_t, the network's noise, their difference, and x̂0"
                picture = gr.Image(label="x_0 · ε · x_t · ε_θ(x_t, t) · ε − ε_θ · x̂0", format="png", interactive=False,
                                   alt_text=alt)  # fmt: skip
                text = gr.Markdown()
        chart, reading = gr.Plot(show_label=False, elem_classes=["ddpm-wide"]), gr.Markdown()
    views = {"picture": picture, "text": text, "chart": chart, "reading": reading}
    return button, [source, class_name, index, upload, t, seed, sketch], views  # sketch: the drawing tab's canvas


def copies_tab():
    """Is it copying? Samples beside their nearest training images, and the ideal denoiser that can only copy."""
    with gr.Tab("Is it copying?"):
        gr.Markdown(
            r"Trained to the end on $N$ images, the loss has one exact minimiser, the *ideal denoiser* "
            r"$\hat x_0^*(x_t, t) = \sum_i \mathrm{softmax}_i\big(-\|x_t - \sqrt{\bar\alpha_t}\,x_i\|^2 / "
            r"2(1-\bar\alpha_t)\big)\,x_i$: run through a sampler it can only return training images. Below, the "
            r"network's samples and the ideal denoiser's from the same noise, and real test images, each beside its "
            r"nearest training images.",
            latex_delimiters=LATEX,
        )
        with gr.Row():
            with gr.Column(scale=1):
                source = CheckedRadio(list(COPIES_SOURCES), value=next(iter(COPIES_SOURCES)), label="Compare")
                seed = CheckedNumber(label="Seed (Generate's, for the same x_T)", value=0, precision=0, minimum=0,
                                     maximum=space.MAX_SEED)  # fmt: skip
                images = CheckedSlider(1, space.MAX_COPIES_IMAGES, value=4, step=1, label="Number of images")
                steps = CheckedSlider(1, space.MAX_COPIES_STEPS, value=50, step=1, label="DPM-Solver++ 2M steps")
                button = gr.Button("Compare with the training set")
            with gr.Column(scale=2):
                alt = "the network's samples, the ideal denoiser's and held-out images, each beside its nearest training images"
                pictures = gr.Image(label="Each row: a picture, then its 3 nearest training images", format="png",
                                    interactive=False, alt_text=alt)  # fmt: skip
                text = gr.Markdown()
    return button, [source, seed, images, steps], {"pictures": pictures, "text": text}


def samplers_tab(T: int):
    """Which sampler? Every one the Space offers from the same x_T, a row each."""
    with gr.Tab("Samplers side by side"):
        gr.Markdown("One $x_T$ and one noise generator through every sampler: what each costs in network calls and "
                    "what it draws, with the quality the model's card measured for it.", latex_delimiters=LATEX)  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1):
                seed = CheckedNumber(label="Seed", value=0, precision=0, minimum=0, maximum=space.MAX_SEED)
                images = CheckedSlider(1, space.MAX_SAMPLERS_IMAGES, value=2, step=1, label="Number of images")
                steps = CheckedSlider(1, T, value=min(T, 50), step=1, label="Steps of the few-step samplers")
                eta = CheckedSlider(0.0, 1.0, value=1.0, step=0.1, label="DDIM's eta (0: deterministic, 1: DDPM's steps)")
                button = gr.Button("Run every sampler")
            with gr.Column(scale=2):
                alt = "every sampler from one x_T, a row each: x_0, then the network's x̂0 at three t"
                pictures = gr.Image(label="A row a sampler: x_0, then x̂0 on the way", format="png", interactive=False,
                                    alt_text=alt)  # fmt: skip
                text = gr.Markdown()
    return button, [seed, images, steps, eta], {"pictures": pictures, "text": text}


def schedule_tab(h: Handlers):
    """Drawn at once for the loaded model (it never changes for a model), redrawn when another loads."""
    with gr.Tab("Schedule"):
        gr.Markdown("β_t, ᾱ_t = ∏ α_s and SNR(t) = ᾱ_t / (1 − ᾱ_t) of the loaded model, and how close x_T is to N(0, I).")
        figure, report = h.schedule(h.name)
        plot = gr.Plot(value=figure, show_label=False, elem_classes=["ddpm-wide"])
        return {"schedule": plot, "schedule_report": gr.Markdown(report)}


def likelihood_tab():
    with gr.Tab("Likelihood"):
        gr.Markdown(
            "The bound the paper's simplified loss leaves out: −log p(x_0) ≤ L_T + Σ L_{t−1} + L_0, "
            "with L_T = KL(q(x_T|x_0) ‖ N(0, I)), "
            "L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t)) and L_0 = −log p_θ(x_0|x_1) over 8-bit bins. "
            "It costs T network evaluations."
        )
        with gr.Row():
            source = CheckedRadio(["held-out test images", UPLOADED], value="held-out test images", label="Data")
            count = CheckedSlider(1, space.MAX_IMAGES, value=8, step=1, label="Number of held-out images (the classes in turn)")
            upload = gr.File(label="Upload an image", file_types=["image"], type="filepath")
        button = gr.Button("Compute the bound")
        views = {"chart": gr.Plot(show_label=False, elem_classes=["ddpm-wide"]), "text": gr.Markdown()}
    return button, [source, count, upload], views


def by_name(handler, views: dict):
    """`handler` as Gradio calls it, and its outputs: the handler returns (or yields) {view name: value}, turned into
    {component: value}, Gradio's updates by component; a view it leaves out keeps what it shows. The outputs are
    the views in their order (the API's return values)."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args, **kwargs):
            for values in handler(*args, **kwargs):
                yield {views[name]: value for name, value in values.items()}

        return stream, list(views.values())

    @functools.wraps(handler)
    def call(*args, **kwargs):
        return {views[name]: value for name, value in handler(*args, **kwargs).items()}

    return call, list(views.values())


def wire_views(h: Handlers, model_state, tabs: dict) -> None:
    """The teaching tabs' events: each tab's button (its API endpoint, named after the tab), and the controls that
    answer at once (t and the seed of the forward process and of the training example, the image source)."""
    private = {"api_visibility": "private"}
    for name in ("forward", "objective", "copies", "samplers"):
        button, inputs, views = tabs[name]
        fn, outputs = by_name(getattr(h, name), views)
        button.click(fn, [model_state, *inputs], outputs, api_name=name)
    for name, fn in (("forward", h.forward), ("objective", h.objective_at)):  # x_t follows t as it is dragged or typed
        _, inputs, views = tabs[name]
        fn, outputs = by_name(fn, views)
        t, seed = inputs[4:6]
        t.input(fn, [model_state, *inputs], outputs, trigger_mode="always_last", **private)
        seed.submit(fn, [model_state, *inputs], outputs, **private)  # a seed typed with Enter
        inputs[0].change(h.upload_shown, inputs[0], inputs[3], **private)  # the upload box only when chosen
    button, inputs, views = tabs["likelihood"]
    likelihood, outputs = by_name(h.likelihood, views)
    likelihood = space.on_gpu(likelihood, h.likelihood_seconds)
    button.click(likelihood, [model_state, *inputs], outputs, api_name="likelihood", concurrency_limit=1)


def build(
    default_model: str | None = None, workdir: str | None = None, allow_local: bool = False, limits: Limits | None = None
) -> gr.Blocks:
    h = Handlers(default_model, workdir, allow_local, limits)
    T = h.first.scheduler.num_train_timesteps
    gr.set_static_paths([str(h.dirs.root)])  # results are served from the capped run folders, never copied
    with guards.Blocks(title=TITLE) as app:  # Gradio's cache is kept within the disk budget by h.tidy (DDPM_DISK_MB)
        model_state = gr.State(h.name)
        gr.Markdown(INTRO)
        box, load_button, bundled, info = model_row(h)
        with gr.Tabs(overflow_behavior="wrap"):  # a phone shows every tab, on two rows
            gen_button, gen_stop, gen_inputs, gen_views, estimate = generate_tab(h, T)
            draw_button, draw_stop, draw_t, draw_note, draw_inputs, draw_views = drawing_tab(h, T)
            fwd_button, fwd_inputs, fwd_views = forward_tab(h, T)
            obj_button, obj_inputs, obj_views = objective_tab(h, T, draw_inputs[0])
            copies_button, copies_inputs, copies_views = copies_tab()
            samplers_button, samplers_inputs, samplers_views = samplers_tab(T)
            sched_views = schedule_tab(h)
            lk_button, lk_inputs, lk_views = likelihood_tab()
        _, class_name, _, _, t_slider, noise_seed = fwd_inputs
        _, num_images, sampler, num_steps, _, _, precision, _ = gen_inputs
        _, _, _, draw_steps, *_ = draw_inputs

        load_inputs = [box, model_state]
        load_views = {"model": model_state, "box": box, "card": info, "steps": num_steps, "forward_t": t_slider,
                      "class_name": class_name, "drawing_t": draw_t, "drawing_note": draw_note, "drawing_steps": draw_steps,
                      **gen_views, **sched_views, "estimate": estimate}  # fmt: skip
        load_model, load_outputs = by_name(h.load_model, load_views)
        # one download or model load at a time; up to 4 generations take turns step by step (space.Serialized), so
        # a new visitor's first frame comes after one step of each running request; the bound runs alone
        loading = {"concurrency_limit": 1, "concurrency_id": "load"}
        load_button.click(load_model, load_inputs, load_outputs, api_name="load_model", **loading)
        private = {"api_visibility": "private"}  # UI-only events: the API has one endpoint per action
        box.submit(load_model, load_inputs, load_outputs, **loading, **private)  # Enter in the text box
        bundled.load_input_event.then(load_model, load_inputs, load_outputs, **loading, **private)  # a bundled example
        # Generate and the drawing share 4 slots; a click during a run starts a new run at once and the old one
        # ends at its next preview, saying so (never ignored); Stop ends the run at its next preview, within a second
        sampling = {"concurrency_limit": 4, "concurrency_id": "sampling", "trigger_mode": "multiple"}
        # on ZeroGPU a GPU is attached for each sampling call, for about twice its predicted time; elsewhere as is
        generate, gen_outputs = by_name(h.generate, gen_views)
        drawing_fn, draw_outputs = by_name(h.drawing, draw_views)
        generate, drawing_fn = space.on_gpu(generate, h.generate_seconds), space.on_gpu(drawing_fn, h.drawing_seconds)
        generating = gen_button.click(generate, [model_state, *gen_inputs], gen_outputs, api_name="generate", **sampling)
        gen_button.click(None, js=SHOW.format(".ddpm-live"), **private)  # in the browser only
        draw_button.click(None, js=SHOW.format(".ddpm-drawing-live"), **private)
        drawing = draw_button.click(drawing_fn, [model_state, *draw_inputs], draw_outputs, api_name="drawing", **sampling)
        gen_stop.click(h.stopped, None, gen_views["status"], cancels=[generating], **private)
        draw_stop.click(h.stopped, None, draw_views["status"], cancels=[drawing], **private)
        gen_views["index"].input(h.scrub, [gen_views["frames"], gen_views["index"]], gen_views["picture"], **private)
        for control in (num_images, sampler, num_steps, precision):
            control.change(h.estimate, [model_state, num_images, sampler, num_steps, precision], estimate, **private)
        draw_t.input(h.strength, [model_state, draw_t], draw_note, **private)
        views = {"forward": (fwd_button, fwd_inputs, fwd_views), "objective": (obj_button, obj_inputs, obj_views),
                 "copies": (copies_button, copies_inputs, copies_views), "samplers": (samplers_button, samplers_inputs,
                 samplers_views), "likelihood": (lk_button, [*lk_inputs, noise_seed], lk_views)}  # fmt: skip
        wire_views(h, model_state, views)
    # a flood is told the queue is full at once; no REST route skips the queue (and its limits)
    app.queue(default_concurrency_limit=2, max_size=16, api_open=False)
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
    try:
        limits, hops = Limits.from_env(), guards.proxy_hops()
    except ValueError as e:  # a setting the operator mistyped: one line
        parser.error(str(e))
    # uvicorn would take the client from X-Forwarded-For for any request from 127.0.0.1 (its default trust), so a
    # local client could name itself: DDPM_PROXY_HOPS alone decides, unless the operator set uvicorn's own trust
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    who = f"entry {hops} from the right of X-Forwarded-For" if hops else "the TCP peer (X-Forwarded-For ignored)"
    logging.getLogger("ddpm.space").info("a client is %s: DDPM_PROXY_HOPS=%d", who, hops)
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
        css=CSS,
        theme=THEME,
        js=FIRST_TAB,
        max_file_size=MAX_FILE_BYTES,
        app_kwargs={"middleware": [guard]},
    )


if __name__ == "__main__":
    main()
