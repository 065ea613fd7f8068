"""The Space as visitors use it: a real Gradio server on 127.0.0.1, its API through gradio_client, and a real
headless Chromium clicking Generate."""

import io
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import app_server
from PIL import Image

from ddpm import space
from ddpm.hub import load_pipeline
from ddpm.sampling import sample
from ddpm.visualize import auto_scale, grid

ROOT = Path(__file__).resolve().parents[1]
DDIM = "DDIM (fewer steps, eta)"
FP32 = "fp32: full precision (ancestral: diffusers' exact images)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` as a user starts it (bundled model), on a free port, behind one proxy (the tests play it:
    each visitor's X-Forwarded-For is the entry that proxy appends, as on a Space)."""
    with app_server(tmp_path_factory.mktemp("app"), DDPM_CLIENT_UPLOAD_MB="40", DDPM_PROXY_HOPS="1") as started:
        yield started


def visitor(server, n: int, **kwargs) -> Client:
    """A client the Space tells apart from the others, as its proxy says: by the X-Forwarded-For address."""
    return Client(server["url"], verbose=False, headers={"X-Forwarded-For": f"10.0.0.{n}"}, **kwargs)


def rss_mb(server) -> float:
    return psutil.Process(server["proc"].pid).memory_info().rss / 2**20


def idle_cpu_s(server, wait: float = 2.0, window: float = 2.0) -> float:
    """CPU seconds the server spends in `window` seconds, `wait` seconds from now."""
    proc = psutil.Process(server["proc"].pid)
    time.sleep(wait)
    before = sum(proc.cpu_times()[:2])
    time.sleep(window)
    return sum(proc.cpu_times()[:2]) - before


@pytest.fixture(scope="module")
def bundled():
    return load_pipeline(space.BUNDLED_MODEL)


def expected_grid(model, seed, n, steps, clip_sample=True):
    """The final images the app must show, computed here without the app."""
    g = torch.Generator().manual_seed(seed)
    x = sample(model.unet, model.scheduler, n, sampler="ddim", num_inference_steps=steps, generator=g, clip_sample=clip_sample)
    return np.asarray(grid(x, nrow=int(np.ceil(np.sqrt(n))), scale=space.picture_scale(model.unet.config.sample_size, n)))


def test_generate_through_the_api(server, bundled):
    client = Client(server["url"], verbose=False)
    job = client.submit(7, 4, DDIM, 25, 0.0, False, FP32, api_name="/generate")
    preview, status, gif, gallery, download, index, scrub = job.result(timeout=300)
    assert status.startswith("done: 25 steps for 4 image(s)")
    assert len(job.outputs()) >= 2  # x_T streamed before the end
    assert Image.open(gif).format == "GIF" and Image.open(gif).n_frames == 26
    assert [g["caption"] for g in gallery][0].startswith(f"t = {bundled.scheduler.num_train_timesteps} · SNR ")
    assert gallery[-1]["caption"] == "t = 0 (x_0)" and all(g["image"].endswith(".png") for g in gallery)
    assert download.endswith(".zip")
    assert index["maximum"] == index["value"] == 25  # the scrubber: the last of its 26 frames ...
    assert scrub["label"] == "x_t | x̂0 · t = 0 (x_0)"
    scrub = scrub["value"]
    assert Image.open(scrub).width > Image.open(preview).width  # ... x_t beside x̂0
    got = np.asarray(Image.open(preview))
    assert np.abs(got.astype(int) - expected_grid(bundled, 7, 4, 25).astype(int)).max() <= 1
    preview, status, *_ = client.predict(7, 4, DDIM, 25, 0.0, False, "bf16: faster on CPUs with bfloat16", api_name="/generate")
    assert status.startswith("done: 25 steps") and status.endswith("(DDIM, seed 7, bf16, x̂0 clipped)")
    fast = np.asarray(Image.open(preview)).astype(int)
    assert 0 < np.abs(fast - got).mean() < 12  # the same picture to the eye (mean grey-level difference), not the same bits
    article = "no clipping, as Algorithm 2 of the paper writes it"
    preview, status, *_ = client.predict(7, 4, DDIM, 25, 0.0, False, FP32, article, api_name="/generate")
    assert status.endswith("(DDIM, seed 7, fp32, x̂0 not clipped)")
    unclipped = expected_grid(bundled, 7, 4, 25, clip_sample=False).astype(int)
    assert np.abs(np.asarray(Image.open(preview)).astype(int) - unclipped).max() <= 1


def load_reply(client, name: str) -> str:
    """The last line of the model card after asking for `name`: a failed load says why there, and nowhere else."""
    box, card, *_ = client.predict(name, api_name="/load_model")
    return card.splitlines()[-1]


def test_bad_inputs_get_one_line_errors_and_the_app_keeps_serving(server, tmp_path):
    client = Client(server["url"], verbose=False)
    for name, message in [
        ("alice/nope", "⚠️ alice/nope is not on this Space, which cannot reach the Hub: pick a bundled model below"),
        ("/no/such/folder", "⚠️ '/no/such/folder' is not a bundled model or a Hub repo id"),
    ]:
        assert load_reply(client, name).startswith(message)
    # out-of-range numbers are stopped by the sliders' bounds (Gradio), with one line each
    with pytest.raises(Exception, match="Value 40 is greater than maximum value 16"):
        client.predict(0, 40, DDIM, 10, 0.0, False, FP32, api_name="/generate")
    with pytest.raises(Exception, match="Value 100000 is greater than maximum value"):
        client.predict(0, 2, DDIM, 100000, 0.0, False, FP32, api_name="/generate")
    with pytest.raises(Exception, match="Value: 'euler' is not in the list of choices: DDPM ancestral"):
        client.predict(0, 2, "euler", 10, 0.0, False, FP32, api_name="/generate")
    # a refused view: one line on its text and a warning, its pictures left as they were (no error badge on each)
    (tmp_path / "notes.png").write_text("not an image, whatever its name says")
    picture, text, strip = client.predict(
        "uploaded image", "Dress", 0, handle_file(str(tmp_path / "notes.png")), 10, 0, api_name="/forward"
    )
    assert text.startswith("⚠️ notes.png is not an image this app can read: upload a PNG") and "Traceback" not in text
    assert picture == strip == {"__type__": "update"}  # gr.skip(): unchanged
    text = client.predict("held-out test image", "Cat", 0, None, 10, 0, api_name="/forward")[1]
    assert text.startswith("⚠️ pick a class of this model's data: T-shirt/top, Trouser")
    result = client.predict(1, 2, DDIM, 5, 0.0, False, FP32, api_name="/generate")
    assert result[1].startswith("done: 5 steps")
    loaded = client.predict("pretrained/ddpm-fashion", api_name="/load_model")  # the schedule and an example come along
    assert any("T = 1000" in str(v) and "x_T is close to N(0, I)" in str(v) for v in loaded)
    assert any(str(v).startswith("An example, made when this model loaded") for v in loaded)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_hostile_requests_get_one_line_and_reveal_nothing(server, tmp_path):
    client = Client(server["url"], verbose=False)
    replies = {}
    for name in ["/etc", "/nonexistent", ".", "/proc/self", "pretrained/../pretrained/ddpm-digits", "x" * 10_000]:
        replies[name] = load_reply(client, name)
    assert replies["/etc"].replace("/etc", "X") == replies["/nonexistent"].replace("/nonexistent", "X")
    pid = str(server["proc"].pid)
    for reply in replies.values():
        assert str(ROOT) not in reply and pid not in reply and "Traceback" not in reply and len(reply) < 300
    assert re.search("x{57}\\.\\.\\.|at most 200 characters", replies["x" * 10_000])
    # a decompression bomb: a few kB on disk, 400 megapixels decoded
    Image.new("1", (20_000, 20_000)).save(tmp_path / "bomb.png")
    bomb = client.predict("uploaded image", "Dress", 0, handle_file(str(tmp_path / "bomb.png")), 10, 0, api_name="/forward")
    assert bomb[1].startswith("⚠️ bomb.png is far larger than 4096x4096 pixels decoded: upload a smaller image")
    (tmp_path / "big.png").write_bytes(b"\0" * 11 * 2**20)  # over max_file_size
    with pytest.raises(Exception) as e:
        client.predict("uploaded image", "Dress", 0, handle_file(str(tmp_path / "big.png")), 10, 0, api_name="/forward")
    assert "Traceback" not in str(e.value)
    with pytest.raises(Exception) as e:
        client.predict("seven", 4, DDIM, 10, 0.0, False, FP32, api_name="/generate")  # text in a number field
    assert "Traceback" not in str(e.value)
    assert client.predict(1, 1, DDIM, 3, 0.0, False, FP32, api_name="/generate")[1].startswith("done: 3 steps")
    log = server["log"].read_text()
    assert "refused: '/etc' is not a bundled model" in log and "Traceback" not in log


def test_disk_use_stays_flat_over_many_generations(server):
    client = Client(server["url"], verbose=False, download_files=False)  # the server's disk is measured, not ours

    def generations(n):
        for seed in range(n):
            client.predict(seed, 2, DDIM, 2, 0.0, False, FP32, api_name="/generate")
        return du(server["tmp"])

    generations(space.WorkDirs().keep + 2)  # fill the run folders to their cap
    after_warm_up = generations(6)
    after_more = generations(20)
    assert after_more <= after_warm_up * 1.1 + 50_000, (after_warm_up, after_more)


def test_a_light_request_is_served_while_heavy_ones_run_and_cancelling_stops_them(server):
    proc = psutil.Process(server["proc"].pid)
    heavy = [Client(server["url"], verbose=False) for _ in range(2)]
    ancestral = "DDPM ancestral, all T steps (Algorithm 2)"
    jobs = [c.submit(s, 16, ancestral, 1000, 0.0, False, FP32, api_name="/generate") for s, c in enumerate(heavy)]
    deadline = time.time() + 60
    while not all(j.outputs() for j in jobs) and time.time() < deadline:  # both heavy requests are running
        time.sleep(0.05)
    light = Client(server["url"], verbose=False).predict(3, 1, DDIM, 3, 0.0, False, FP32, api_name="/generate")
    assert light[1].startswith("done: 3 steps") and not any(j.done() for j in jobs)  # served while they run
    for j in jobs:
        j.cancel()
    time.sleep(2.0)
    cpu = proc.cpu_times()
    time.sleep(2.0)
    busy = sum(proc.cpu_times()[:2]) - sum(cpu[:2])
    assert busy < 0.5, f"the server kept computing {busy:.1f} CPU-s in 2 s after both requests were cancelled"


def test_the_space_opens_on_fashion_mnist_with_its_held_out_test_images(server):
    client = Client(server["url"], verbose=False)
    picture, text, strip = client.predict("held-out test image", "Ankle boot", 3, None, 0, 0, api_name="/forward")
    assert "**t = 0** of T = 1000" in text and len(strip) == 9
    boots = space.held_out_set(load_pipeline(space.BUNDLED_MODEL))
    boot = boots.images[np.flatnonzero(boots.labels == 9)[3]]
    shown = np.asarray(Image.open(picture).convert("L"))
    scale = auto_scale(28, 192)
    assert np.array_equal(shown[: 28 * scale : scale, : 28 * scale : scale], boot)  # x_0 is that held-out boot


def test_a_drawing_through_the_api(server, tmp_path):
    client = Client(server["url"], verbose=False)
    drawing = Image.new("RGBA", (280, 280))
    drawing.paste((255, 255, 255, 255), (100, 40, 180, 240))  # a white bar on the transparent canvas
    drawing.save(tmp_path / "bar.png")
    sketch = {"background": None, "layers": [], "composite": handle_file(str(tmp_path / "bar.png"))}
    preview, status, gif, gallery, _ = client.predict(sketch, 300, DDIM, 10, 5, FP32, api_name="/drawing")
    assert status.startswith("done: 10 steps for 1 image(s)") and gallery[0]["caption"].startswith("t = 300 · SNR")
    again = client.predict(sketch, 300, DDIM, 10, 5, FP32, api_name="/drawing")[0]
    assert np.array_equal(np.asarray(Image.open(preview)), np.asarray(Image.open(again)))  # same seed, same result
    zero = np.asarray(Image.open(client.predict(sketch, 0, DDIM, 10, 5, FP32, api_name="/drawing")[0]).convert("L"))
    bar = space.model_input(load_pipeline(space.BUNDLED_MODEL), space.drawing_image(drawing))
    assert np.array_equal(zero, np.asarray(grid(bar, scale=space.picture_scale(28, 1))))  # t = 0: the input
    Image.new("RGBA", (280, 280)).save(tmp_path / "empty.png")
    empty = client.predict({**sketch, "composite": handle_file(str(tmp_path / "empty.png"))}, 300, DDIM, 10, 5, FP32,
                           api_name="/drawing")  # fmt: skip
    assert empty[1].startswith("⚠️ the canvas is empty: draw something first")  # the status line, not an error everywhere


def test_eight_clients_at_once_all_complete_correctly(server, bundled):
    proc = psutil.Process(server["proc"].pid)
    client = Client(server["url"], verbose=False)
    client.predict(0, 16, DDIM, 10, 0.0, True, FP32, api_name="/generate")  # warm up
    rss_before = proc.memory_info().rss

    def one(seed):
        c = visitor(server, seed)  # eight visitors: one client may hold at most three places
        return seed, c.submit(seed, 4, DDIM, 20, 0.0, False, FP32, api_name="/generate").result(timeout=300)

    start = time.time()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(100, 108)))
    assert time.time() - start < 280
    assert len(results) == 8
    for seed, (preview, status, *_) in results:
        assert status.startswith("done: 20 steps"), status
        got = np.asarray(Image.open(preview))
        assert np.abs(got.astype(int) - expected_grid(bundled, seed, 4, 20).astype(int)).max() <= 1, seed
    grown = (proc.memory_info().rss - rss_before) / 2**20
    assert grown < 300, f"server grew by {grown:.0f} MiB"


# Every piece of text shown, against the background it is drawn on (alpha layers and opacities composed), below
# WCAG AA's contrast: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold)
LOW_CONTRAST = (Path(__file__).parent / "low_contrast.js").read_text()


def first_screen(page) -> None:
    """What a visitor sees on arrival with no click, at the page's size: Generate inside the screen and the first stop
    of the Tab key; a picture in the screen that moves (the example's trajectory playing: a change among three shots
    1 s apart); every picture on the page with alt text; no text below AA contrast."""
    height = page.viewport_size["height"]
    button = page.get_by_role("button", name="Generate", exact=True).bounding_box()
    assert button["y"] + button["height"] <= height, f"Generate at y = {button['y']:.0f}, below the first screen"
    live = page.locator(".ddpm-live img").first
    box = live.bounding_box()
    assert box["y"] < height, f"the live view starts at y = {box['y']:.0f}, below the first screen"
    shots = set()
    for _ in range(3):
        shots.add(live.screenshot())
        page.wait_for_timeout(1000)
    assert len(shots) > 1, "nothing moves in the first screen"
    missing = page.evaluate("[...document.querySelectorAll('img')].filter(i => !i.alt).map(i => i.src.slice(-60))")
    assert not missing, missing
    low = page.evaluate(LOW_CONTRAST)
    assert not low, low
    stops = []
    for _ in range(3):  # a keyboard reaches Generate within 3 presses of Tab from the page's top
        page.keyboard.press("Tab")
        stops.append(page.evaluate("(e => e.id || e.tagName)(document.activeElement)"))
        if stops[-1] == "ddpm-generate":
            break
    assert stops[-1] == "ddpm-generate", stops
    page.evaluate("document.activeElement.blur()")


def test_browser_click_generate(server, tmp_path):
    """A visitor in Chromium: an example on arrival before any click; Generate; Stop ends an all-T-steps run and
    frees the server; a failed load changes nothing but its own line; the drawing tab; a bundled model in one click;
    a phone's width shows the final frame and every tab."""
    from playwright.sync_api import sync_playwright

    shot = Path(os.environ.get("DDPM_SCREENSHOT", tmp_path / "app.png"))
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(server["url"], wait_until="domcontentloaded")
        page.get_by_text("An example, made when this model loaded", exact=False).wait_for(timeout=60_000)
        arrival = page.locator("img[src*='examples']").first  # the example's trajectory, playing with no click
        arrival.wait_for(timeout=30_000)
        loaded = "() => [...document.querySelectorAll(\"img[src*='examples']\")].some(i => i.complete && i.naturalWidth > 0)"
        page.wait_for_function(loaded, timeout=30_000)  # the picture arrived, not only its element
        first_screen(page)
        page.get_by_role("button", name="Generate", exact=True).click(timeout=60_000)
        page.get_by_text("done:", exact=False).wait_for(timeout=240_000)
        assert page.get_by_text("done: 50 steps for 16 image(s)", exact=False).first.is_visible()
        assert page.get_by_text("(DPM-Solver++ 2M, seed 0, ", exact=False).first.is_visible()  # the default sampler
        page.locator("img[src*='trajectory.gif']").first.wait_for(timeout=60_000)
        page.get_by_text("t = 0 (x_0)", exact=True).first.wait_for(timeout=60_000)
        assert page.locator("img[src*='0000.png']").count() >= 1
        page.screenshot(path=str(shot), full_page=True)
        frames = page.locator(".ddpm-frames").first  # the gallery: captions whole; a frame clicked opens large
        cut = frames.evaluate("g => [...g.querySelectorAll('.caption-label')].filter(c => c.scrollWidth > c.clientWidth + 1)")
        assert not cut, cut
        frames.locator("button").nth(3).click()
        page.wait_for_timeout(500)
        large = frames.locator(".preview img").first.bounding_box()
        assert large["height"] >= 300, large
        page.keyboard.press("Escape")
        # all T ancestral steps, stopped while it runs: the server is idle again within a second or two
        page.get_by_text("DDPM ancestral, all T steps (Algorithm 2)", exact=True).first.click()
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text(" s left", exact=False).first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Stop", exact=True).first.click()
        page.get_by_text("Stopped. Press Generate to start again.", exact=False).wait_for(timeout=10_000)
        busy = idle_cpu_s(server, wait=1.0)
        assert busy < 0.5, f"the server kept computing {busy:.1f} CPU-s in 2 s after Stop"
        # a failed load: one line on the card, the box back on the loaded model, no error anywhere else
        box = page.get_by_label("Model: a Hub repo id (user/name) or a bundled model")
        box.fill("someone/ddpm-cats")
        page.get_by_role("button", name="Load model").click()
        page.get_by_text("someone/ddpm-cats is not on this Space, which cannot reach the Hub", exact=False).first.wait_for(
            timeout=30_000
        )
        page.wait_for_timeout(500)
        assert box.input_value() == "pretrained/ddpm-fashion"
        assert page.get_by_text("Error", exact=True).count() == 0
        # the drawing tab: a stroke on the canvas, then noise it to t and bring it back
        page.get_by_role("tab", name="Your drawing").click()
        canvas = page.locator("canvas").first
        canvas.wait_for(timeout=30_000)
        canvas.scroll_into_view_if_needed()
        bounds = canvas.bounding_box()
        page.mouse.move(bounds["x"] + bounds["width"] * 0.5, bounds["y"] + bounds["height"] * 0.2)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(bounds["x"] + bounds["width"] * 0.5, bounds["y"] + bounds["height"] * (0.2 + 0.06 * k))
        page.mouse.up()
        page.get_by_role("button", name="Noise it to t, then denoise").click()
        page.get_by_text("steps for 1 image(s)", exact=False).wait_for(timeout=120_000)
        result = page.locator(".ddpm-drawing-live img").first.bounding_box()  # the result in view after the click
        assert 0 <= result["y"] < page.viewport_size["height"] - 100, result
        page.screenshot(path=str(shot.with_name("drawing.png")), full_page=True)
        # the forward tab opens on a picture; a t typed with Enter redraws it; the upload box only when chosen
        page.get_by_role("tab", name="Forward process").click()
        page.locator("img[alt='x_0 beside x_t, noised to t']").first.wait_for(timeout=30_000)
        assert page.get_by_text("t = 250 of T = 1000", exact=False).first.is_visible()
        assert not page.get_by_text("Upload an image", exact=True).first.is_visible()
        t_box = page.get_by_label("number input for t", exact=True)
        t_box.fill("600")
        t_box.press("Enter")
        page.get_by_text("t = 600 of T = 1000", exact=False).first.wait_for(timeout=10_000)
        page.get_by_text("uploaded image", exact=True).first.click()
        page.get_by_text("Upload an image", exact=True).first.wait_for(timeout=10_000)
        # Algorithm 1 on one picture: the example and the error over t, then a new t answers at once
        page.get_by_role("tab", name="Training objective").click()
        page.get_by_role("button", name="Show the training example and the error over t").click()
        page.get_by_text("of the steps (t ≤", exact=False).first.wait_for(timeout=60_000)  # the curve's reading
        assert page.get_by_text("**t = 300**", exact=False).count() == 0  # markdown rendered, not shown raw
        assert page.locator(".katex").count() > 0 and page.get_by_text("$x_0$", exact=False).count() == 0  # LaTeX drawn
        page.get_by_text("t = 300: ‖ε − ε_θ‖² per pixel", exact=False).first.wait_for(timeout=10_000)
        t_box = page.get_by_label("number input for t of the training example", exact=True)
        t_box.fill("900")
        t_box.press("Enter")
        page.get_by_text("t = 900: ‖ε − ε_θ‖² per pixel", exact=False).first.wait_for(timeout=10_000)
        page.screenshot(path=str(shot.with_name("objective.png")), full_page=True)
        page.get_by_role("tab", name="Is it copying?").click()
        page.get_by_role("button", name="Compare with the training set").click()
        page.get_by_text("Nearest training image (of 60,000)", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shot.with_name("copies.png")), full_page=True)
        page.get_by_role("tab", name="Samplers side by side").click()
        page.get_by_role("button", name="Run every sampler").click()
        page.get_by_text("end on the same pictures", exact=False).first.wait_for(timeout=120_000)
        page.screenshot(path=str(shot.with_name("samplers.png")), full_page=True)
        page.get_by_role("tab", name="Generate").click()
        # one click on a bundled example loads the T = 200 model, with its schedule warning on the card
        page.get_by_text("This model, and how long a run takes here", exact=True).click()
        page.get_by_text("pretrained/ddpm-digits-t200", exact=True).click()
        page.get_by_text("bundled digits model with a short schedule, T = 200", exact=False).wait_for(timeout=60_000)
        page.get_by_text("x_T is not close to N(0, I)", exact=False).first.wait_for(timeout=10_000)
        # a phone: every tab in view, and the gallery's last frame (x_0) inside the screen's width
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.goto(server["url"], wait_until="domcontentloaded")
        phone.get_by_text("An example, made when this model loaded", exact=False).wait_for(timeout=60_000)
        first_screen(phone)
        phone.get_by_role("button", name="Generate", exact=True).tap()
        phone.get_by_text(" s left", exact=False).first.wait_for(timeout=60_000)  # running: its live view is in view
        live = phone.locator(".ddpm-live img").first.bounding_box()
        assert live["y"] < 844 and live["y"] + live["height"] > 0, live
        phone.get_by_text("done:", exact=False).first.wait_for(timeout=120_000)
        phone.evaluate("window.scrollTo(0, 0)")
        for tab in ("Generate", "Your drawing", "Forward process", "Schedule", "Likelihood"):
            assert phone.get_by_role("tab", name=tab).is_visible(), tab
        phone.get_by_role("tab", name="Schedule").click()  # the chart at a readable width, scrolled sideways
        chart = phone.locator(".ddpm-wide img").first
        chart.wait_for(timeout=10_000)
        assert chart.bounding_box()["width"] >= 600 and chart.bounding_box()["x"] >= 0, chart.bounding_box()
        phone.get_by_role("tab", name="Generate").click()
        last = phone.get_by_text("t = 0 (x_0)", exact=True).first
        last.scroll_into_view_if_needed(timeout=30_000)
        edge = last.bounding_box()
        assert edge["x"] >= 0 and edge["x"] + edge["width"] <= 390, edge
        phone.screenshot(path=str(shot.with_name("phone.png")), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    errors = [line for line in server["log"].read_text().splitlines() if re.search(r"\bERROR\b|Traceback", line)]
    assert not errors, errors  # the walk left nothing wrong in the server's log


def test_is_it_copying_through_the_api(server):
    """/copies on the bundled Fashion-MNIST model (its 60,000 training images from Debian's dataset-fashion-mnist):
    three pictures, the ideal denoiser's samples are training images, the network's are not; hostile input is one
    line."""
    client = visitor(server, 30)
    pictures, text = client.predict("new samples for the seed", 0, 2, 20, api_name="/copies")
    assert Image.open(pictures).width > 3 * Image.open(pictures).height / 2  # three blocks side by side
    assert "Nearest training image (of 60,000)" in text and "the ideal denoiser's 0.000" in text
    ours = float(text.split("samples ")[1].split()[0].strip("*,."))
    assert ours > 0.02
    with pytest.raises(Exception, match="greater than maximum value 100"):  # refused before it runs, in one line
        client.predict("new samples for the seed", 0, 2, 10**6, api_name="/copies")
    # the visitor's own last Generate: its x_0 compared, not new samples; another visitor has none yet
    status = client.predict(5, 3, DDIM, 10, 0.0, False, FP32, api_name="/generate")[1]
    assert status.startswith("done: 10 steps for 3 image(s)")
    _, text = client.predict("your last Generate run", 5, 8, 20, api_name="/copies")
    assert "**your run's images " in text and "the ideal denoiser's 0.000" in text
    _, text = visitor(server, 32).predict("your last Generate run", 5, 8, 20, api_name="/copies")
    assert text.startswith("⚠️ no finished run of yours to compare yet: press Generate first")


def test_every_sampler_side_by_side_through_the_api(server):
    """/samplers: a row a sampler from one x_T, the calls each made, the fashion-FD the card measured beside it."""
    client = visitor(server, 31)
    pictures, text = client.predict(0, 1, 20, 1.0, api_name="/samplers")
    assert Image.open(pictures).height > 4 * 28  # five rows, one below the other
    assert "| DPM-Solver++ 2M, 20 steps | 20 |" in text and "end on the same pictures" in text
    ancestral = next(line for line in text.splitlines() if line.startswith("| DDPM ancestral"))
    assert ancestral.split(" | ")[1] == "1000" and "±" in ancestral  # the card's score for all T steps


# --------------------------------------------------------------------- round 2: what a hostile client tries
def test_drawings_are_checked_before_gradio_decodes_them(server, tmp_path):
    """Gradio's ImageEditor decodes every layer before the handler runs and grows its blob store to any index a
    client names; ours reads headers and bounds both (13000x13000 PNGs took the server from 2.6 to 7.1 GB before)."""
    import httpx

    config = httpx.get(server["url"] + "config").json()
    sketchpad = next(c["id"] for c in config["components"] if c.get("type") in ("imageeditor", "sketchpad"))
    before = rss_mb(server)
    for i in range(5):
        form = {"component_id": sketchpad, "session_hash": "h", "fn_name": "accept_blobs", "type": "layer",
                "index": "10000000", "id": f"far-{i}"}  # fmt: skip
        httpx.post(server["url"] + "gradio_api/component_server", data=form, files={"file": ("a.png", b"\x89PNG")})
    Image.new("1", (13_000, 13_000)).save(tmp_path / "bomb.png")  # 20 kB on disk, 169 megapixels decoded
    bomb = handle_file(str(tmp_path / "bomb.png"))
    client = visitor(server, 20)
    with pytest.raises(Exception, match="the drawing is far larger than 2048x2048 pixels decoded: upload a smaller"):
        client.predict({"background": bomb, "layers": [bomb] * 3, "composite": bomb}, 300, DDIM, 10, 5, FP32, api_name="/drawing")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(Exception, match="the drawing is not an image this app can read"):
        client.predict({"background": None, "layers": [], "composite": handle_file(str(tmp_path / "notes.png"))}, 300,
                       DDIM, 10, 5, FP32, api_name="/drawing")  # fmt: skip
    grown = rss_mb(server) - before
    assert grown < 150, f"the server grew by {grown:.0f} MiB"
    log = server["log"].read_text()
    assert "refused: a drawing may have at most 4 layers" in log and "Traceback" not in log


def test_one_client_cannot_hold_the_queue(server):
    heavy = visitor(server, 30)
    ancestral = "DDPM ancestral, all T steps (Algorithm 2)"
    jobs = [heavy.submit(s, 16, ancestral, 1000, 0.0, False, FP32, api_name="/generate") for s in range(5)]
    deadline = time.time() + 60
    while sum(bool(j.outputs()) or j.done() for j in jobs) < 5 and time.time() < deadline:
        time.sleep(0.1)
    refused = [j for j in jobs if j.done() and "429 Too Many Requests" in str(j.exception())]
    assert len(refused) == 2, [str(j.exception()) if j.done() else "running" for j in jobs]
    light = visitor(server, 31).predict(3, 1, DDIM, 3, 0.0, False, FP32, api_name="/generate")
    assert light[1].startswith("done: 3 steps")  # another visitor is served at once
    for j in jobs:
        j.cancel()
    assert "refused: POST join: you have 3 requests queued or running" in server["log"].read_text()
    busy = idle_cpu_s(server)
    assert busy < 0.5, f"the server kept computing {busy:.1f} CPU-s in 2 s after the requests were cancelled"


def test_a_cancelled_likelihood_stops_computing(server):
    job = visitor(server, 40).submit("held-out test images", 16, None, 0, api_name="/likelihood")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:  # the first progress line: it is computing
        time.sleep(0.1)
    assert job.outputs() and job.outputs()[-1][1].startswith("computing the bound: ")
    job.cancel()
    busy = idle_cpu_s(server, wait=1.5)
    assert busy < 0.5, f"the server kept computing {busy:.1f} CPU-s in 2 s after the likelihood was cancelled"


def test_uploads_are_budgeted_per_client(server, tmp_path):
    import httpx

    (tmp_path / "9mb.png").write_bytes(os.urandom(9 * 2**20))

    def upload(who: str) -> httpx.Response:
        with open(tmp_path / "9mb.png", "rb") as f:
            return httpx.post(server["url"] + "gradio_api/upload", files={"files": f}, headers={"X-Forwarded-For": who})

    assert [upload("10.0.0.50").status_code for _ in range(4)] == [200] * 4  # 36 of this server's 40 MB
    refused = upload("10.0.0.50")
    assert (
        refused.status_code == 413 and "larger than the 4 MB you may still upload in these 10 minutes" in refused.json()["detail"]
    )
    assert upload("10.0.0.51").status_code == 200  # another visitor is not affected
    # files are charged too (each makes a folder): 16 small files cost 1 MB of the budget; 17 are refused at once
    small = [("files", (f"{i}.png", b"x" * 16)) for i in range(17)]
    many = httpx.post(server["url"] + "gradio_api/upload", files=small, headers={"X-Forwarded-For": "10.0.0.52"})
    assert many.status_code == 413 and many.json()["detail"] == "upload at most 16 files at once"
    sent = httpx.post(server["url"] + "gradio_api/upload", files=small[:16], headers={"X-Forwarded-For": "10.0.0.52"})
    assert sent.status_code == 200 and len(sent.json()) == 16
    assert [upload("10.0.0.52").status_code for _ in range(4)] == [200] * 4  # 36 MB, and 1 MB for the small files
    refused = upload("10.0.0.52")
    assert refused.status_code == 413 and "larger than the 3 MB you may still upload" in refused.json()["detail"]


def test_only_the_uis_endpoints_are_exposed_and_malformed_calls_get_one_line(server):
    import httpx

    client = visitor(server, 60)
    api = client.view_api(print_info=False, return_format="dict")
    named = ["/copies", "/drawing", "/forward", "/generate", "/likelihood", "/load_model", "/objective", "/samplers"]
    assert sorted(api["named_endpoints"]) == named
    assert not api["unnamed_endpoints"]
    with pytest.raises(Exception, match="Number of images needs a value"):
        client.predict(0, None, DDIM, 3, 0.0, False, FP32, api_name="/generate")
    config = httpx.get(server["url"] + "config").json()
    generate = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate")
    short = httpx.post(server["url"] + "gradio_api/queue/join", json={"data": [1], "fn_index": generate, "session_hash": "s"})
    assert short.status_code == 422 and short.json()["detail"] == "this endpoint takes 9 input values, got 1"
    body = b'{"data": [null, NaN, 2, "DDIM (fewer steps, eta)", 3, 0.0, false, "%s", "%s"], "fn_index": %d, "session_hash": "n"}'
    nan = body % (FP32.encode(), "clip x̂0 to [-1, 1] (diffusers' default)".encode(), generate)
    assert (
        httpx.post(server["url"] + "gradio_api/queue/join", content=nan, headers={"content-type": "application/json"}).status_code
        == 200
    )
    with httpx.stream("GET", server["url"] + "gradio_api/queue/data", params={"session_hash": "n"}, timeout=60) as events:
        done = next(line for line in events.iter_lines() if "process_completed" in line)
    assert "Seed must be a finite number, got 'nan'" in done
    files = visitor(server, 61, download_files=False).predict(1, 2, DDIM, 3, 0.0, False, FP32, api_name="/generate")
    assert str(server["proc"].pid) not in str(files) and str(ROOT) not in str(files)  # no PID, no install path
    log = server["log"].read_text()
    assert "refused: POST join: this endpoint takes 9 input values, got 1" in log and "Traceback" not in log


def test_a_visitors_results_stay_while_another_generates_many(server):
    import httpx

    mine = visitor(server, 70, download_files=False).predict(5, 2, DDIM, 3, 0.0, False, FP32, api_name="/generate")
    gif, download = mine[2]["url"], mine[4]["url"]
    other = visitor(server, 71)
    for seed in range(20):  # more runs than the 16 that all visitors together used to share
        other.predict(seed, 1, DDIM, 2, 0.0, False, FP32, api_name="/generate")
    assert httpx.get(gif).status_code == 200 and httpx.get(download).status_code == 200


def test_a_second_generate_during_a_run_stops_it_and_starts_the_new_one(server):
    """One page (one gradio_client session) clicks Generate, then again while the first run goes on: the first ends
    at its next preview saying why, the second runs to the end; the server is idle after."""
    page = visitor(server, 80)
    ancestral = "DDPM ancestral, all T steps (Algorithm 2)"
    first = page.submit(1, 16, ancestral, 1000, 0.0, False, FP32, api_name="/generate")
    deadline = time.time() + 60
    while not first.outputs() and time.time() < deadline:
        time.sleep(0.05)
    second = page.submit(2, 2, DDIM, 5, 0.0, False, FP32, api_name="/generate")
    assert second.result(timeout=120)[1].startswith("done: 5 steps for 2 image(s)")
    first.result(timeout=30)
    assert first.outputs()[-1][1] == "Stopped: you started a new run."
    assert "output values" not in server["log"].read_text()  # the replaced run's last update fits the outputs
    busy = idle_cpu_s(server, wait=1.0)
    assert busy < 0.5, f"the server kept computing {busy:.1f} CPU-s in 2 s after the replaced run"


# --------------------------------------------------------------------- round 3: Gradio's other doors
def test_every_way_into_the_queue_is_checked_alike(server):
    """/queue/join and /call/<name> alike: a short session id, public endpoints only, one value per input, the
    client's share of the queue; JSON nested past 32 levels is refused before Gradio parses it; Gradio's direct
    /run/<name> reaches no generation; a drawing's blob id longer than Gradio's key is refused. Each in
    one line, none leaving a traceback, and the server's memory does not grow with what it was sent."""
    import httpx

    url = server["url"] + "gradio_api/"
    config = httpx.get(server["url"] + "config").json()
    generate = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate")
    args = [0, 1, DDIM, 2, 0.0, False, FP32, "clip x̂0 to [-1, 1] (diffusers' default)"]
    before = rss_mb(server)
    for _ in range(5):  # a session id of megabytes used to be kept, 14-17 MB a join
        big = httpx.post(url + "queue/join", json={"data": [None, *args], "fn_index": generate, "session_hash": "s" * 3_000_000})
        assert big.status_code == 422 and big.json()["detail"] == "a session id is at most 64 letters, digits, '-' or '_'"
    assert rss_mb(server) - before < 50
    deep = b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b', "fn_index": %d, "session_hash": "d"}' % generate
    reply = httpx.post(url + "queue/join", content=deep, headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"] == "the request's JSON nests deeper than 32 levels"
    short = httpx.post(url + "call/generate", json={"data": [1]})
    assert short.status_code == 422 and short.json()["detail"] == "this endpoint takes 9 input values, got 1"
    hidden = httpx.post(url + "call/estimate", json={"data": [None, 16, DDIM, 50, FP32]})  # a UI-only event
    assert hidden.status_code == 404 and hidden.json()["detail"].startswith("no endpoint /estimate")
    direct = httpx.post(url + "run/generate", json={"data": [None, *args]})  # Gradio's direct call, past the queue:
    assert direct.status_code == 404  # only for the UI's events that skip it (the examples' loader), never a generation
    who = {"X-Forwarded-For": "10.0.3.1"}
    busy = [None, 0, 16, DDIM, 50, 0.0, False, FP32, args[-1]]  # a few seconds each: three are still queued or running
    codes = [httpx.post(url + "call/generate", json={"data": busy}, headers=who).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429], codes  # the same share of the queue as through /queue/join
    sketchpad = next(c["id"] for c in config["components"] if c.get("type") in ("imageeditor", "sketchpad"))
    form = {"component_id": sketchpad, "session_hash": "h", "fn_name": "accept_blobs", "type": "layer", "index": "0",
            "id": "x" * 200}  # fmt: skip
    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, format="PNG")
    assert httpx.post(url + "component_server", data=form, files={"file": ("a.png", png.getvalue())}).status_code == 200
    log = server["log"].read_text()
    assert "refused: a drawing's id has at most 80 characters" in log and "refused: POST generate: you have 3 requests" in log
    assert "Traceback" not in log and "KeyError" not in log
    deadline = time.time() + 60  # the three accepted runs end before the next test
    while time.time() < deadline and idle_cpu_s(server, wait=0, window=0.5) > 0.2:
        pass


def test_a_client_that_names_itself_gains_nothing(tmp_path):
    """Off a Space no proxy is trusted: a client that sends X-Forwarded-For headers of its own, a new one each time
    or two at once, is still its address. 30 spoofed joins got 13 accepted before; now 3 (its share), and uploads
    under made-up names spend its own budget."""
    import httpx

    with app_server(tmp_path, DDPM_CLIENT_UPLOAD_MB="20") as plain:
        ancestral = "DDPM ancestral, all T steps (Algorithm 2)"
        clients = [Client(plain["url"], verbose=False, headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(5)]
        jobs = [c.submit(n, 16, ancestral, 1000, 0.0, False, FP32, api_name="/generate") for n, c in enumerate(clients)]
        deadline = time.time() + 60
        while sum(bool(j.outputs()) or j.done() for j in jobs) < 5 and time.time() < deadline:
            time.sleep(0.1)
        refused = [j for j in jobs if j.done() and "429 Too Many Requests" in str(j.exception())]
        assert len(refused) == 2, [str(j.exception()) if j.done() else "running" for j in jobs]
        for j in jobs:
            j.cancel()
        (tmp_path / "9mb.png").write_bytes(os.urandom(9 * 2**20))
        codes = []
        for n in range(3):
            names = [("X-Forwarded-For", f"198.51.100.{n}"), ("X-Forwarded-For", f"192.0.2.{n}")]  # two headers at once
            with open(tmp_path / "9mb.png", "rb") as f:
                codes.append(httpx.post(plain["url"] + "gradio_api/upload", files={"files": f}, headers=names).status_code)
        assert codes == [200, 200, 413]  # 18 of its 20 MB, whatever names it gave
        assert "a client is the TCP peer (X-Forwarded-For ignored): DDPM_PROXY_HOPS=0" in plain["log"].read_text()


def test_malformed_inputs_and_component_calls_get_one_line(server):
    """What Gradio checks before any handler runs answered a blank error and a traceback in the log: a drawing that
    is not one, a file reference to a server file, a component call with a JSON body, an unknown component or no
    session. Each now gets one line, to the caller and to the log, and the server's memory stays where it was."""
    import httpx

    url = server["url"]
    config = httpx.get(url + "config").json()
    deps = {d.get("api_name"): d for d in config["dependencies"]}
    components = {c["id"]: c for c in config["components"]}

    def call(api: str, replace: dict, session: str) -> str:
        dep = deps[api]
        data = [components[i]["props"].get("value") for i in dep["inputs"]]
        for kind, value in replace.items():
            data[next(j for j, i in enumerate(dep["inputs"]) if components[i]["type"] == kind)] = value
        joined = httpx.post(url + "gradio_api/queue/join", json={"data": data, "fn_index": dep["id"], "session_hash": session})
        assert joined.status_code == 200, joined.text
        with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=60) as events:
            return next(line for line in events.iter_lines() if "process_completed" in line)

    before = rss_mb(server)
    outside = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    for n, sketch in enumerate(["a drawing", [1, 2], {"background": 5, "layers": "x", "composite": None}]):
        assert "an input is not what this endpoint takes (EditorData)" in call("drawing", {"imageeditor": sketch}, f"m{n}")
    sketch = {"background": None, "layers": [], "composite": outside}
    assert "a file input must be a file uploaded to this Space" in call("drawing", {"imageeditor": sketch}, "m3")
    assert "a file input must be a file uploaded to this Space" in call("forward", {"file": outside}, "m4")
    editor = next(i for i, c in components.items() if c["type"] == "imageeditor")
    component_calls = {
        "json": {"json": {"component_id": editor, "fn_name": "accept_blobs", "data": {"id": "x"}, "session_hash": "z"}},
        "unknown": {"json": {"component_id": 99999, "fn_name": "accept_blobs", "data": {}, "session_hash": "z"}},
        "no session": {"files": {"blob": ("a.png", b"x")}, "data": {"component_id": str(editor), "fn_name": "accept_blobs"}},
        "not a server function": {"json": {"component_id": editor, "fn_name": "preprocess", "data": {}, "session_hash": "z"}},
    }
    replies = {k: httpx.post(url + "gradio_api/component_server", **kw) for k, kw in component_calls.items()}
    codes = {"json": 422, "unknown": 404, "no session": 422, "not a server function": 404}
    assert {k: r.status_code for k, r in replies.items()} == codes
    assert replies["json"].json()["detail"] == "a drawing's parts are sent as files (multipart/form-data), not JSON"
    assert rss_mb(server) < before + 50
    log = server["log"].read_text()
    assert "Traceback" not in log and "refused: POST component_server: no such component function on this Space" in log


def test_a_visitor_cancels_only_their_own_requests(server):
    """Gradio's /cancel ended whatever event id it was sent (another visitor's run, in 2 of 3 trials). Another
    visitor, or another page of the same visitor, is refused in one line and the run goes on; its own page
    cancels it."""
    import httpx

    url = server["url"]
    config = httpx.get(url + "config").json()
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "generate")
    components = {c["id"]: c for c in config["components"]}
    data = [components[i]["props"].get("value") for i in dep["inputs"]]
    data[1:8] = [3, 16, "DDPM ancestral, all T steps (Algorithm 2)", 1000, 0.0, False, FP32]
    alice, mallory = {"X-Forwarded-For": "10.0.5.1"}, {"X-Forwarded-For": "10.0.5.2"}
    body = {"data": data, "fn_index": dep["id"], "session_hash": "alice"}
    event = httpx.post(url + "gradio_api/queue/join", json=body, headers=alice).json()["event_id"]
    stream = {"params": {"session_hash": "alice"}, "headers": alice, "timeout": 120}
    with httpx.stream("GET", url + "gradio_api/queue/data", **stream) as events:
        lines = events.iter_lines()
        next(line for line in lines if "process_generating" in line)  # running
        for session, who in [("mallory", mallory), ("alice", mallory), ("mallory", alice)]:
            cancel = {"session_hash": session, "fn_index": dep["id"], "event_id": event}
            refused = httpx.post(url + "gradio_api/cancel", json=cancel, headers=who)
            assert refused.status_code == 403 and refused.json()["detail"] == "that request is not yours to cancel"
        assert "process_generating" in next(line for line in lines if line.startswith("data:"))  # still running
        cancel = {"session_hash": "alice", "fn_index": dep["id"], "event_id": event}
        own = httpx.post(url + "gradio_api/cancel", json=cancel, headers=alice)
        assert own.status_code == 200
        assert "process_completed" in next(line for line in lines if "process_completed" in line or "close_stream" in line)
    assert "refused: POST cancel: that request is not yours to cancel" in server["log"].read_text()
