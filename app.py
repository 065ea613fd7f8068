"""The Space: watch a DDPM turn noise into images, step by step.

    python app.py                       # the bundled digits model, offline
    MODEL_ID=user/ddpm-model python app.py   # or --model, a Hub repo id or a local folder

UI wiring only: the work is done by `ddpm.demo`.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from ddpm import demo
from ddpm.hub import ModelLoadError

TITLE = "DDPM, step by step"
INTRO = """# DDPM, step by step
A Denoising Diffusion Probabilistic Model (Ho et al. 2020) runs the **reverse process** p_θ(x_{t-1} | x_t) from pure
noise x_T ~ N(0, I) down to an image x_0, one step at a time:
x_{t-1} = (x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t)) / √α_t + σ_t z. The scheduler is written from these equations;
the network ε_θ is a diffusers `UNet2DModel`."""


def _ui_error(e: Exception) -> gr.Error:
    """Every failure reaches the visitor as one line, never a traceback."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return gr.Error(text, print_exception=False)


def build(default_model: str | None = None, workdir: str | None = None) -> gr.Blocks:
    registry = demo.ModelRegistry(demo.BUNDLED_MODEL)
    startup_note = ""
    name = default_model or demo.BUNDLED_MODEL
    try:
        first = registry.load(name)
    except ModelLoadError as e:  # a bad MODEL_ID still gives a working Space on the bundled model
        startup_note = f"\n\n⚠️ {e} Serving the bundled digits model instead."
        name, first = demo.BUNDLED_MODEL, registry.load(demo.BUNDLED_MODEL)
    registry.default = name
    dirs = demo.WorkDirs(workdir)
    T = first.scheduler.num_train_timesteps

    def current(model_name):
        try:
            return registry.load(model_name)
        except ModelLoadError as e:
            raise _ui_error(e) from None

    def load_model(new_name, model_name):
        new_name = (new_name or "").strip() or registry.default
        try:
            model = registry.load(new_name)
        except ModelLoadError as e:
            raise _ui_error(e) from None
        T = model.scheduler.num_train_timesteps
        return (new_name, demo.describe(model), gr.Slider(maximum=T, value=min(T, 50)), gr.Slider(maximum=T, value=T // 4))

    def run_generate(model_name, seed, num_images, sampler, num_steps, eta, show_x0):
        model = current(model_name)
        try:
            settings = demo.check_settings(model, seed, num_images, sampler, num_steps, eta, show_x0)
            for update in demo.generate(model, settings, dirs.new()):
                yield (update.preview, update.status, update.gif, update.gallery or None, update.download)
        except ValueError as e:
            raise _ui_error(e) from None
        except Exception as e:  # noqa: BLE001 - anything else still reaches the visitor as one line
            raise _ui_error(RuntimeError(f"generation failed: {e}")) from None

    def pick_image(model_name, source, index, upload):
        model = current(model_name)
        image = demo.open_upload(upload) if source == "uploaded image" else demo.held_out_digit(index)
        return model, demo.model_input(model, image)

    def run_forward(model_name, source, index, upload, t, seed):
        try:
            model, x0 = pick_image(model_name, source, index, upload)
            picture, text = demo.forward_view(model, x0, t, seed)
            return picture, text, demo.forward_strip(model, x0, seed=seed)
        except ValueError as e:
            raise _ui_error(e) from None

    def run_schedule(model_name):
        model = current(model_name)
        return demo.schedule_figure(model), demo.schedule_report(model)

    def run_likelihood(model_name, source, count, upload, seed, progress=gr.Progress()):  # noqa: B008 (Gradio idiom)
        try:
            model = current(model_name)
            if source == "uploaded image":
                x0 = demo.model_input(model, demo.open_upload(upload))
            else:
                x0 = demo.held_out_batch(model, count)
            return demo.likelihood_view(model, x0, seed, progress=lambda i, n: progress(i / n, desc=f"t = {n - i}"))
        except ValueError as e:
            raise _ui_error(e) from None

    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as app:
        model_state = gr.State(name)
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model_box = gr.Textbox(
                label="Model: a Hub repo id (user/name) or a local folder", value=demo.display_name(name), scale=4
            )
            load_button = gr.Button("Load model", scale=1)
        bundled = gr.Examples([[demo.display_name(p)] for p in demo.BUNDLED_MODELS], inputs=[model_box],
                              label="Bundled models (offline): T = 1000 as in Ho et al., and the article's T = 200")  # fmt: skip
        model_info = gr.Markdown(demo.describe(first) + startup_note)

        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=demo.MAX_SEED)
                    num_images = gr.Slider(1, demo.MAX_IMAGES, value=16, step=1, label="Number of images")
                    sampler = gr.Radio(list(demo.SAMPLER_LABELS), value=next(iter(demo.SAMPLER_LABELS)), label="Sampler")
                    num_steps = gr.Slider(1, T, value=min(T, 50), step=1, label="Steps (respaced DDPM and DDIM)")
                    eta = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="DDIM eta (0 = deterministic, 1 = DDPM-like)")
                    show_x0 = gr.Checkbox(label="Show the predicted x_0 beside x_t", value=False)
                    generate_button = gr.Button("Generate", variant="primary")
                with gr.Column(scale=2):
                    status = gr.Markdown("Press **Generate**: x_T is pure noise; each step removes a little of it.")
                    preview = gr.Image(label="x_t, live", format="png", type="pil", interactive=False, height=320)
            with gr.Row():
                gif = gr.Image(label="The whole trajectory, x_T → x_0 (GIF)", type="filepath", interactive=False, height=320)
                download = gr.File(label="Download the GIF and every frame (PNG)", interactive=False)
            gallery = gr.Gallery(label="Frames from t = T to t = 0", format="png", columns=6, height="auto",
                                 object_fit="contain")  # fmt: skip

        with gr.Tab("Forward process"):
            gr.Markdown("The closed form q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): noise added in one step, for any t.")
            with gr.Row():
                with gr.Column(scale=1):
                    source = gr.Radio(["held-out digit", "uploaded image"], value="held-out digit", label="Image")
                    digit = gr.Slider(0, 359, value=0, step=1, label="Held-out digit number")
                    upload = gr.File(label="Upload an image", file_types=["image"], type="filepath")
                    t_slider = gr.Slider(0, T, value=T // 4, step=1, label="t")
                    noise_seed = gr.Number(label="Noise seed", value=0, precision=0, minimum=0)
                    forward_button = gr.Button("Show x_t")
                with gr.Column(scale=2):
                    forward_image = gr.Image(label="x_0 and x_t", format="png", interactive=False)
                    forward_text = gr.Markdown()
            forward_gallery = gr.Gallery(label="x_t from t = 0 to T, same ε", format="png", columns=9, height="auto")

        with gr.Tab("Noise schedule"):
            gr.Markdown("β_t, ᾱ_t = ∏ α_s and SNR(t) = ᾱ_t / (1 − ᾱ_t) of the loaded model, and how close x_T is to N(0, I).")
            schedule_button = gr.Button("Show the schedule")
            schedule_plot = gr.Plot(label="Schedule")
            schedule_text = gr.Markdown()

        with gr.Tab("Likelihood"):
            gr.Markdown(
                "The bound the article leaves out: −log p(x_0) ≤ L_T + Σ L_{t−1} + L_0, with L_T = KL(q(x_T|x_0) ‖ N(0, I)), "
                "L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t)) and L_0 = −log p_θ(x_0|x_1) over 8-bit bins. "
                "It costs T network evaluations."
            )
            with gr.Row():
                lk_source = gr.Radio(["held-out digits", "uploaded image"], value="held-out digits", label="Data")
                lk_count = gr.Slider(1, demo.MAX_IMAGES, value=8, step=1, label="Number of held-out digits")
                lk_upload = gr.File(label="Upload an image", file_types=["image"], type="filepath")
            lk_button = gr.Button("Compute the bound")
            lk_plot = gr.Plot(label="Terms of the bound")
            lk_text = gr.Markdown()

        load_inputs, load_outputs = [model_box, model_state], [model_state, model_info, num_steps, t_slider]
        load_button.click(load_model, load_inputs, load_outputs, api_name="load_model")
        model_box.submit(load_model, load_inputs, load_outputs)  # Enter in the text box
        bundled.load_input_event.then(load_model, load_inputs, load_outputs)  # a click on a bundled example
        generate_button.click(
            run_generate,
            [model_state, seed, num_images, sampler, num_steps, eta, show_x0],
            [preview, status, gif, gallery, download],
            api_name="generate",
        )
        forward_inputs = [model_state, source, digit, upload, t_slider, noise_seed]
        forward_button.click(run_forward, forward_inputs, [forward_image, forward_text, forward_gallery], api_name="forward")
        t_slider.release(run_forward, forward_inputs, [forward_image, forward_text, forward_gallery])
        schedule_button.click(run_schedule, [model_state], [schedule_plot, schedule_text], api_name="schedule")
        lk_button.click(run_likelihood, [model_state, lk_source, lk_count, lk_upload, noise_seed], [lk_plot, lk_text],
                        api_name="likelihood")  # fmt: skip
    app.queue(default_concurrency_limit=2, max_size=32)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("MODEL_ID"), help="Hub repo id or local folder (env MODEL_ID)")
    parser.add_argument("--host", default=None, help="address to listen on (env GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (env GRADIO_SERVER_PORT; default 7860)")
    args = parser.parse_args()
    build(args.model).launch(server_name=args.host, server_port=args.port, footer_links=["gradio", "settings"])


if __name__ == "__main__":
    main()
