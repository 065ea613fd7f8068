"""The quality metric the benchmarks report, the report's reading of its numbers, and the experiments on tiny sizes
(the benchmarks themselves are run, not asserted)."""

import json
import sys

import numpy as np
import pytest
import torch

from benchmarks import gpu, metrics, report
from benchmarks.harness import REAL_ROW, ROOT, weights_digest
from benchmarks.metrics import bootstrap_fd, frechet_distance, through_model_path, to_metric
from ddpm import space


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx((shift**2).sum(), rel=1e-6)
    # N(0, I) vs N(0, 4I) in 3-d: 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, 2 * rng.normal(size=(20_000, 3))) == pytest.approx(3.0, rel=0.05)
    assert frechet_distance(a, a + shift) == pytest.approx(frechet_distance(a + shift, a), rel=1e-9)


def test_metric_path():
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert to_metric(x).shape == (5, 1, 8, 8)
    digits, fashion = metrics.digits_net(), metrics.fashion_net()  # one classifier, sized for each data set
    assert digits.features(to_metric(x)).shape == (5, 64) and digits(to_metric(x)).shape == (5, 10)
    assert fashion.features(torch.zeros(5, 1, 28, 28)).shape == (5, 64)
    assert set(digits.state_dict()) == set(fashion.state_dict())
    real, labels = through_model_path("test", 16)
    assert real.shape == (360, 1, 8, 8) and len(labels) == 360 and real.min() >= -1 and real.max() <= 1


def test_bootstrap_fd_spread_is_the_sampling_noise():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(5000, 2))
    shift = np.array([1.0, 0.0])
    small, large = rng.normal(size=(200, 2)) + shift, rng.normal(size=(5000, 2)) + shift
    b_small, b_large = bootstrap_fd(small, ref, 100, seed=0), bootstrap_fd(large, ref, 100, seed=0)
    assert np.array_equal(b_small, bootstrap_fd(small, ref, 100, seed=0))  # seeded: the same resamples
    assert b_large.mean() == pytest.approx(1.0, abs=0.1)
    # the sd of FD(n samples) falls like 1/sqrt(n): 25x the samples, about a fifth of the spread
    assert 3 < b_small.std() / b_large.std() < 8


def test_fashion_fd_scores_through_the_shipped_classifier(tmp_path):
    """fashion-FD's feature network is the file beside the benchmark, not a network trained in the run (trained on
    another device it comes out another network, and scores of different networks do not compare): it loads,
    classifies the test images as it did when written, and its features tell a shifted set apart."""
    net, acc = metrics.fashion_classifier()
    assert metrics.CLASSIFIER.is_file() and acc == pytest.approx(0.891, abs=0.0005)
    real, _ = metrics.split_tensor("test")
    f_a, f_b = metrics.features(net, real[:2000]), metrics.features(net, real[2000:4000])
    assert frechet_distance(f_a, f_b) < 0.5 * frechet_distance(f_a, metrics.features(net, (real[2000:4000] + 0.6)))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    from safetensors import SafetensorError

    with pytest.raises(SafetensorError):  # a broken file is an error, never a silently retrained network
        metrics.fashion_classifier(tmp_path / "empty.safetensors")


def test_the_blow_up_check_flags_broken_pictures_and_no_real_image():
    """Blown up: values far outside [-1, 1] before the clamp, or a flat picture (uniform, all white, all black); none
    of Fashion-MNIST's 10,000 test images nor of the digits' test split counts, each kind of broken picture does."""
    from benchmarks.metrics import failures, split_tensor

    real, _ = split_tensor("test")
    assert failures(real) == {"blown": 0, "flat": 0, "any": 0}
    digits, _ = through_model_path("test", 8)
    assert failures(digits)["any"] == 0
    speckled = real[:1].clone()
    speckled[0, 0, 3, 3] = 4.0
    white, black, grey = torch.ones(1, 1, 28, 28), -torch.ones(1, 1, 28, 28), torch.full((1, 1, 28, 28), 0.2)
    counts = failures(torch.cat([speckled, white, black, grey, real[:4]]))
    assert counts == {"blown": 1, "flat": 3, "any": 4}


def test_a_rare_failure_count_takes_some_samplers_and_another_reverse_variance(tmp_path, monkeypatch, capsys):
    """`benchmarks.failures --only ... --variance_type fixed_large --fashion-fd`: the chosen rows alone, on the same
    noises; the variance reaches the stochastic step and not DDIM's eta-0 step; one fashion-FD per block of noises."""
    from benchmarks import failures

    with pytest.raises(SystemExit, match="no sampler respaced-5; use any of: ancestral, respaced-50"):
        failures.plan("fp32", only=["respaced-5"])
    assert [k for k, _ in failures.plan("fp32", False, ["ancestral unclipped"])] == ["ancestral unclipped"]
    assert failures.plan("fp32", only=["ddim-100 eta 1"], steps=100) == [
        ("ddim-100 eta 1", {"sampler": "ddim", "eta": 1.0, "num_inference_steps": 100, "clip_sample": True, "precision": "fp32"})
    ]
    model, only = "pretrained/ddpm-fashion", ["respaced-50", "ddim-50"]
    small = failures.count(model, 4, 2, only=only, fd_block=2)
    large = failures.count(model, 4, 2, only=only, variance_type="fixed_large", fd_block=2)
    assert list(small) == only and list(large) == only and "fashion_fd" not in failures.count(model, 2, 2, only=only[1:])
    assert len(small["respaced-50"]["fashion_fd"]) == 2 and all(np.isfinite(small["respaced-50"]["fashion_fd"]))
    assert small["ddim-50"]["fashion_fd"] == large["ddim-50"]["fashion_fd"]
    assert small["respaced-50"]["fashion_fd"] != large["respaced-50"]["fashion_fd"]

    from diffusers import DDPMPipeline
    from diffusers import DDPMScheduler as DiffusersDDPMScheduler

    from ddpm.hub import load_pipeline

    m = load_pipeline(model)  # --diffusers: what DDPMPipeline(num_inference_steps=50) gives a diffusers user, same x_T
    ours = failures.diffusers_respaced(m, 2, torch.Generator().manual_seed(7))
    pipe = DDPMPipeline(m.unet, DiffusersDDPMScheduler.from_config(dict(m.scheduler.config)))
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(7), num_inference_steps=50, output_type="np").images
    assert np.allclose((ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy(), theirs, atol=1e-6)
    theirs_row = ["diffusers DDPMScheduler-50"]
    assert [k for k, _ in failures.plan("fp32", only=theirs_row, diffusers=True)] == theirs_row

    out = tmp_path / "large.json"  # the command line's result, as `python -m benchmarks --rare-failures` reads it
    monkeypatch.setattr(sys, "argv", ["failures", model, "--only", "respaced-50", "--n", "2", "--batch", "2",
                                      "--variance_type", "fixed_large", "--fashion-fd", "--out", str(out)])  # fmt: skip
    failures.main()
    assert torch.is_grad_enabled()  # the command leaves the caller's autograd as it was
    printed = capsys.readouterr().out  # the command's table, from the result it wrote
    assert f"{model}, 2 noises, reverse variance fixed_large" in printed and "| respaced-50 | **" in printed
    anc = failures.count(model, 2, 2, only=["ancestral"], fd_block=2)  # one block, the first of `small`'s two
    results = [{"n": 4, "variance_type": None, "rows": small}, json.loads(out.read_text()), {"n": 2, "rows": anc}]
    ratio = small["ddim-50"]["fashion_fd"][0] / anc["ancestral"]["fashion_fd"][0]
    assert report.x_ancestral(results, small["ddim-50"]["fashion_fd"]) == (ratio, ratio, ratio, 1)
    r = results[1]["rows"]["respaced-50"]
    assert r["noises"] == [] if r["any"] == 0 else len(r["noises"]) == r["any"]
    table = "\n".join(report.rare_report(results))
    fd = small["respaced-50"]["fashion_fd"]
    assert f"| respaced-50 | β̃ (the model's) | **{small['respaced-50']['any']}** of 4 |" in table
    x = fd[0] / anc["ancestral"]["fashion_fd"][0]
    assert f"| {np.mean(fd):.2f} ± {np.std(fd, ddof=1):.2f} | {fd[0]:.2f} | {x:.2f} ({x:.2f}-{x:.2f}, 1 block) |" in table
    one = r["fashion_fd"][0]  # one block: no sd
    assert f"| respaced-50 | β | **{r['any']}** of 2 |" in table and f"| {one:.2f} | {one:.2f} |" in table
    sentence = report.rare_card_sentence(results)
    one_x = one / anc["ancestral"]["fashion_fd"][0]
    assert f"respaced-50 with σ_t² = β {r['any']} of 2 (fashion-FD {one:.1f}, {one_x:.2f}x ancestral)" in sentence


def test_the_training_images_row_is_the_floor_block_by_block_and_no_real_picture_is_flagged(monkeypatch):
    """`benchmarks.failures --real`: training images in the floor's order, so the first block is the main table's
    floor; the rule flags none; the report sets ancestral sampling's blocks against the real blocks' mean."""
    from benchmarks import failures

    real = failures.real_rows(6, fd_block=3)[REAL_ROW]
    x_train, _ = metrics.split_tensor("train")
    net, _ = metrics.fashion_classifier()
    f_test = metrics.features(net, metrics.split_tensor("test")[0])
    floor_3 = frechet_distance(metrics.features(net, x_train[metrics.floor_order(len(x_train))[:3]]), f_test)
    assert real["any"] == 0 and real["noises"] == [] and real["fashion_fd"][0] == pytest.approx(floor_3)
    assert len(real["fashion_fd"]) == 2 and real["fashion_fd"][1] != real["fashion_fd"][0]
    assert "fashion_fd" not in failures.real_rows(2, fd_block=0)[REAL_ROW]

    anc = {"ancestral": {"any": 0, "noises": [], "fashion_fd": [3 * real["fashion_fd"][0], 3 * real["fashion_fd"][1]]}}
    results = [{"n": 6, "rows": {REAL_ROW: real}}, {"n": 6, "variance_type": None, "rows": anc}]
    table = "\n".join(report.rare_report(results))
    assert f"| {REAL_ROW} | - | **0** of 6 | - |" in table
    assert "average" in table and "**3.00x** the real blocks' mean (3.00x on the first block of each" in table
    assert "training images (the floor) 0 of 6 (fashion-FD" in report.rare_card_sentence(results)
    assert report.floor_lines(results[1:]) == []  # no real row, no line

    monkeypatch.setattr(sys, "argv", ["failures", "--n", "2"])
    with pytest.raises(SystemExit):
        failures.main()  # neither a model nor --real


def gpu_result(ms_small: float, ms_large: float, compiled: bool = False) -> dict:
    """A `python -m benchmarks.gpu speed` result whose steps take the given milliseconds at batch 64 and 256."""
    rows = [
        {"batch": b, "precision": "no", "ours": [1000 * b / ms] * 2, "reference": [500 * b / ms] * 2, "ratio": 2.0,
         "ratio_min": 1.9, "ratio_max": 2.1, "network_alone": 1250 * b / ms}
        for b, ms in ((64, ms_small), (256, ms_large))
    ]  # fmt: skip
    if compiled:
        rows[-1].update(network_compiled=3 * rows[-1]["network_alone"], compile_s=41.0)
    return {"machine": "a GPU", "device": "cuda", "preset": "nano", "steps": 100, "rows": rows,
            "peaks": {"fp32": 5e13, "bf16": 8e14}, "train_flops_per_image": 4.3e8}  # fmt: skip


def test_the_gpu_report_says_what_sets_the_pace_from_the_step_times():
    host_bound = "\n".join(report.gpu_lines(gpu_result(38.0, 40.0)))
    assert "38.0 ms at batch 64 and 40.0 ms at batch 256" in host_bound and "4x the images for 1.05x the time" in host_bound
    assert "waits on the host" in host_bound and "`torch.compile` was not measured in this run." in host_bound
    assert "| 256 | fp32 | 6,400 | 3,200 | **2.00x** (1.90-2.10) | 8,000 | 0.80 | 2.75 | 5.5% |" in host_bound
    busy = "\n".join(report.gpu_lines(gpu_result(10.0, 36.0, compiled=True)))
    assert "the device's arithmetic sets the pace" in busy and "waits on the host" not in busy
    assert "reaches 26,667 images/s, 3.00x eager; its first step took 41 s" in busy
    loop = {"batch": 256, "mode": "reduce-overhead", "eager": 6000.0, "compiled": 21000.0, "compiled_steps": 600,
            "compiled_wall_s": 60.0}  # fmt: skip
    compiled_loop = "\n".join(report.gpu_lines({**gpu_result(38.0, 40.0), "compiled_loop": loop}))
    assert "**21,000 images/s against 6,000 eager** in the same run (3.50x)" in compiled_loop
    assert "--dynamo_mode reduce-overhead" in compiled_loop and "whole training loop" not in host_bound


def fashion_rows(full: float, ddim50: float, ddim_all: float | None) -> dict:
    rows = {"ancestral": {"fd": full, "fd_sd": 1.0, "steps": 1000}, "ddim-50": {"fd": ddim50, "fd_sd": 1.0, "steps": 50},
            "ddim-100": {"fd": 7.0, "fd_sd": 1.0, "steps": 100}}  # fmt: skip
    if ddim_all is not None:
        rows["ddim-1000"] = {"fd": ddim_all, "fd_sd": 1.2, "steps": 1000}
    return rows


def test_the_card_says_how_much_of_the_ddim_gap_is_deterministic_sampling():
    from benchmarks.report import deterministic_gap, more_ddim

    assert more_ddim(fashion_rows(4.0, 8.0, 6.0)) == [100, 1000] and deterministic_gap(fashion_rows(4.0, 8.0, None)) == ""
    most = deterministic_gap(fashion_rows(4.0, 8.0, 7.0))
    assert "scores 1.75x (7.00 ± 1.20): 75% of DDIM-50's gap remains" in most and "not the step count, holds most" in most
    assert "the step count holds most of it" in deterministic_gap(fashion_rows(4.0, 8.0, 4.4))


def test_the_card_recommends_dpm_solver_only_where_it_scores_near_ancestral_sampling():
    from benchmarks.report import best_samplers

    rows = fashion_rows(4.0, 8.0, 6.0)
    assert best_samplers(rows) == "use all 1000 ancestral steps for the best images"  # not measured
    near = {**rows, "dpm2m-50": {"fd": 4.7, "fd_sd": 1.0, "steps": 50}}
    assert best_samplers(near) == "DPM-Solver++ 2M or all 1000 ancestral steps give the best images"
    far = {**rows, "dpm2m-50": {"fd": 5.0, "fd_sd": 1.0, "steps": 50}}  # 1.25x
    assert best_samplers(far) == "use all 1000 ancestral steps for the best images"


def test_the_gpu_speed_benchmark_runs_here_and_writes_each_row(tmp_path):
    """The same code on the CPU (where CI runs): each row of ours against the reference loop is written as it ends."""
    out = tmp_path / "gpu.json"
    result = gpu.bench_speed(None, "nano", [(8, "no")], steps=5, repeats=1, compile_last=False, out=out)
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    (row,) = json.loads(out.read_text())["rows"]
    assert row["batch"] == 8 and row["ours"][0] > 0 and row["reference"][0] > 0 and row["network_alone"] > 0
    assert result["train_flops_per_image"] > 1e8 and "| 8 | fp32 |" in "\n".join(report.gpu_lines(result))


def test_the_ddim_gap_statistics_measure_what_they_say():
    from benchmarks.ddim_gap import quadratic_timesteps
    from benchmarks.metrics import class_distance, mean_term, picture_stats, spread, uniform_shrink

    half = -torch.ones(2, 1, 8, 8)
    half[:, :, :4] = 1.0  # the top half white: half the pixels foreground, mean 0
    s = picture_stats(half)
    assert s["foreground"] == pytest.approx(0.5) and s["mean"] == pytest.approx(0.0)
    assert picture_stats(torch.full((1, 1, 8, 8), 0.3))["detail"] == 0.0 and s["detail"] > 0
    assert class_distance([10, 10], [20, 20]) == 0.0 and class_distance([10, 0], [0, 5]) == 1.0
    a = np.zeros((4, 3))
    assert mean_term(a, a + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0)
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200_000, 4))
    assert spread(f) == pytest.approx(4.0, rel=0.01)
    assert uniform_shrink(spread(f), spread(0.5 * f)) == pytest.approx(frechet_distance(f, 0.5 * f), rel=1e-3)
    ts = quadratic_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and (np.diff(ts) < 0).all()
    assert ts[-2] - ts[-1] < ts[0] - ts[1]  # denser near t = 0


def test_the_ddim_gap_loop_is_the_spaces_ddim_along_the_same_timesteps():
    from benchmarks.ddim_gap import ddim_over
    from ddpm import space
    from ddpm.hub import load_pipeline
    from ddpm.sampling import sample, sample_shape, sampling_timesteps
    from ddpm.scheduler import randn

    m = load_pipeline(space.BUNDLED_MODEL)
    ours = sample(m.unet, m.scheduler, 2, sampler="ddim", num_inference_steps=10, generator=torch.Generator().manual_seed(3))
    x = randn(sample_shape(m.unet, 2), torch.Generator().manual_seed(3), torch.device("cpu"), torch.float32)
    assert torch.equal(ddim_over(m, x, sampling_timesteps(1000, 10), "fp32"), ours)


def gap_result(anc_fd: float, d50_fd: float, all_fd: float, all_fg: float, all_spread: float = 0.8) -> dict:
    def row(fd, fg, classes, spread):
        return {"fd": fd, "fd_sd": 1.0, "mean_term": fd / 4, "foreground": fg, "detail": 0.47, "mean": -0.4,
                "spread": spread, "classes": classes, "failures": {"any": 0}, "x_ddim50": [fd / d50_fd, 0.9, 1.1]}  # fmt: skip

    even, skewed = [100] * 10, [100] * 7 + [70, 100, 130]
    rows = {"ancestral": row(anc_fd, 0.46, even, 0.95), "ddim-50": row(d50_fd, all_fg, skewed, all_spread),
            "ddim-1000": row(all_fd, all_fg, skewed, all_spread),
            "ddim-50 unclipped": row(d50_fd - 0.5, all_fg, skewed, all_spread)}  # fmt: skip
    test = {"foreground": 0.46, "detail": 0.48, "mean": -0.43, "classes": even, "spread": 1.0}
    return {"n": 1000, "precision": "bf16", "test": test, "rows": rows}


def test_the_ddim_gap_report_claims_only_what_its_numbers_show():
    far = "\n".join(report.ddim_gap_lines(gap_result(3.0, 8.0, 6.0, 0.50)))
    assert "| ddim-50 unclipped | 7.50 ± 1.00 | 2.50 | 0.94 (0.90-1.10) | 1.88 | 0.80 |" in far
    assert "ddim-50 unclipped, scores 2.50x ancestral sampling; DDIM with every step taken scores 2.00x" in far
    assert "No choice of steps, spacing or clipping reaches 1.2x" in far
    # the excess 3.00: mean terms 1.50 - 0.75, the rest covariance
    assert "excess over ancestral sampling (3.00), 0.75 is in the mean term and 2.25 in the covariance term" in far
    assert "less varied pictures: the features' total variance is 0.80 of the test images' with DDIM-1000" in far
    # tr(S) (1 - sqrt(c))^2 at c = 0.80 and 0.95, tr(S) = 1: 0.0111 - 0.0006
    assert "it would cost 0.01 of the 2.25; the rest is in which ways the pictures vary" in far
    assert "a little bigger" in far and "| 0.030 |" in far  # 30 of 1000 images in another class than the test mix
    close = "\n".join(report.ddim_gap_lines(gap_result(3.0, 3.4, 3.3, 0.46, all_spread=1.0)))
    assert "No choice" not in close and "less varied" not in close and "a little" not in close


def test_the_card_names_the_ddim_gap_only_for_the_weights_it_measured(tmp_path):
    from benchmarks.report import card_sentence, ddim_gap_lines, gap_sentence

    far, close = gap_result(3.0, 8.0, 6.0, 0.50), gap_result(3.0, 3.4, 3.3, 0.46)
    text = card_sentence(far)
    assert "No change to the sampler closes the gap" in text and "ddim-50 unclipped, scores 2.50x" in text
    assert "DDIMScheduler" not in text and "variance 0.80 of the test images'" in text  # no diffusers rows measured
    shipped = {"diffusers DDIMScheduler, 50 steps": {**far["rows"]["ddim-50"], "fd": 10.5},
               "diffusers DDIMScheduler, 50 steps, use_clipped_model_output": {**far["rows"]["ddim-50"], "fd": 8.1}}  # fmt: skip
    both = card_sentence({**far, "rows": {**far["rows"], **shipped}})
    assert "`DDIMScheduler` as it ships scores 3.50x, 2.70x with `use_clipped_model_output=True`" in both
    assert card_sentence(close) == ""
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"these weights")
    far["weights"] = weights_digest(str(tmp_path))
    assert gap_sentence({"ddim_gap": far}, str(tmp_path)) == text
    far["model"] = str(tmp_path)
    assert "earlier weights" not in "\n".join(ddim_gap_lines(far))
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"retrained weights")
    assert gap_sentence({"ddim_gap": far}, str(tmp_path)) == "" and gap_sentence({}, str(tmp_path)) == ""
    assert f"**Measured on earlier weights of `{tmp_path}`**" in "\n".join(ddim_gap_lines(far))  # RESULTS.md says so


def test_a_recipe_ablation_reads_compare_results_and_results_json(tmp_path):
    """A model's rows come from `benchmarks.gpu compare` (here on the CPU, few-step samplers only) or results.json."""
    from benchmarks import recipe

    out = tmp_path / "cmp.json"
    out.write_text(json.dumps(gpu.compare([space.BUNDLED_MODEL], n=4, batch=4, device="cpu", ancestral=False), default=float))
    g = recipe.group("two models", [f"new={out}", f"shipped={ROOT / 'benchmarks' / 'results.json'}"])
    assert set(g["runs"]["new"]) == {"respaced-50", "ddim-50", "ddim-50 eta 1", "dpm2m-50"}
    shipped = g["runs"]["shipped"]
    lines = report.recipe_lines([g])
    new_line, shipped_line = (next(l for l in lines if l.startswith(f"| {k} |")) for k in ("new", "shipped"))
    assert new_line.split(" | ")[3] == "-"  # no ancestral row, no ratio
    assert shipped_line.split(" | ")[3] == f"{shipped['ddim-50']['fd'] / shipped['ancestral']['fd']:.2f}"
    with pytest.raises(ValueError, match="LABEL=FILE"):
        recipe.group("note", [str(out)])


def test_what_a_visitor_waits_for_is_measured_through_the_real_server():
    """benchmarks.served on two short runs: each served run is paired with the network's own calls for it, and the
    report's row says the ratio and whether it meets its target."""
    from benchmarks.served import measure

    result = measure(repeats=1, images=2, cases=(("ddim", 4),))
    (row,) = result["rows"]
    assert row["calls"] == 4 and len(row["served"]) == len(row["network"]) == 1
    assert 0 < row["network"][0] < row["served"][0]  # the server adds to the network, never less
    assert row["ratio"] == row["served"][0] / row["network"][0] and 0 < row["first"][0] <= row["served"][0]
    table = "\n".join(report.served_lines(result))
    assert f"| DDIM, 4 steps | 4 | {row['first'][0]:.2f} s |" in table and f"**{row['ratio']:.2f}x**" in table
    assert "≤ 1.5x: " in table and "Server peak RSS" in table


def test_the_report_rewritten_from_results_json_is_the_committed_one(tmp_path):
    """`python -m benchmarks --skip-speed --skip-quality --update` rewrites RESULTS.md from results.json alone: the
    report module turns the committed measurements into the committed prose, word for word."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    made = report.plots(results, tmp_path)
    assert made and all((tmp_path / m).is_file() for m in made)
    assert report.results_md(results, made) == (ROOT / "benchmarks" / "RESULTS.md").read_text()


def test_the_cards_quality_section_is_written_through_model_card(tmp_path):
    """`--fashion-card` rewrites the Quality section of the model's card with huggingface_hub's `ModelCard`: from the
    committed results, the shipped card comes back byte for byte (its metadata and other sections untouched)."""
    import shutil

    from huggingface_hub import ModelCard

    shipped = ROOT / space.BUNDLED_MODEL / "README.md"
    shutil.copy(shipped, tmp_path / "README.md")
    shutil.copytree(ROOT / space.BUNDLED_MODEL / "unet", tmp_path / "unet")  # the DDIM-gap sentence checks the weights
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    card = ModelCard.load(tmp_path / "README.md")
    card.text = card.text.replace("| sampler (the Space's defaults) |", "| a stale table |")
    card.save(tmp_path / "README.md")
    report.write_card_quality(str(tmp_path), results["fashion"])
    assert (tmp_path / "README.md").read_bytes() == shipped.read_bytes()
