"""train_accelerate.py as users run it: real `accelerate launch` processes, real kills, a real HTTP Hub."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusers import DDIMPipeline, DDPMPipeline, DPMSolverMultistepScheduler
from helpers import DEVICES, python_path
from hub_server import FakeHub

import train_accelerate
from ddpm.checkpoints import find_checkpoint, weights_digest
from ddpm.hub import load_pipeline, write_model_card
from ddpm.sampling import sample
from ddpm.training import compile_note, stop_between_steps

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ACCELERATE = str(Path(PY).with_name("accelerate"))
SMALL = [
    "--resolution", "8", "--num_train_timesteps", "20", "--train_batch_size", "8", "--eval_batch_size", "2",
    "--report_to", "none", "--logging_steps", "1", "--save_images_steps", "0", "--lr_warmup_steps", "0",
    "--learning_rate", "1e-3", "--seed", "3",
]  # fmt: skip
DIGEST = re.compile(r"rank (\d+) of (\d+) \((\w+)\): final training weights sha256 (\w+)")


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE", "RANK", "LOCAL_RANK"))}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": python_path(), "HF_HUB_OFFLINE": "1", **extra})
    return env


def train_cmd(out, *args):
    return [PY, str(ROOT / "train_accelerate.py"), "--output_dir", str(out), *SMALL, *args]


def run(cmd, env=None, timeout=300):
    r = subprocess.run(cmd, env=env or base_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digests(output: str) -> dict[int, tuple[str, str]]:
    return {int(m[0]): (m[2], m[3]) for m in DIGEST.findall(output)}


# --------------------------------------------------------------------- distributed
def test_two_cpu_processes_train_as_one_ddp_job(tmp_path):
    out = tmp_path / "ddp"
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           *train_cmd(out, "--max_train_steps", "4", "--checkpointing_steps", "2")[1:]]  # fmt: skip
    r = run(cmd, base_env(ACCELERATE_USE_CPU="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    d = digests(r.stdout + r.stderr)
    assert sorted(d) == [0, 1], r.stdout
    assert d[0][0] == d[1][0] == "MULTI_CPU"
    assert d[0][1] == d[1][1]  # gradients were all-reduced: both ranks hold the same weights
    ckpt = out / "checkpoints" / "checkpoint-2"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert len(list(ckpt.glob("model*.safetensors"))) == 1  # one writer
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert "2 process(es)" in r.stdout and r.stdout.count("saved the model") == 1


def test_fashion_mnist_trains_offline_in_two_cpu_processes(tmp_path):
    """The article's data set from Debian's files (no network), under the Hub id a user would type, on two ranks."""
    out = tmp_path / "fashion"
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           *train_cmd(out, "--max_train_steps", "2", "--dataset_name", "zalando-datasets/fashion_mnist", "--resolution", "28",
                      "--model_preset", "nano")[1:]]  # fmt: skip
    r = run(cmd, base_env(ACCELERATE_USE_CPU="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "60000 images (in cpu memory)" in r.stdout and "2 process(es)" in r.stdout
    d = digests(r.stdout + r.stderr)
    assert sorted(d) == [0, 1] and d[0][1] == d[1][1]
    pipe = load_pipeline(str(out))
    assert pipe.unet.config.sample_size == 28 and pipe.unet.config.block_out_channels == [16, 32, 64]
    assert "zalando-datasets/fashion_mnist" in (out / "README.md").read_text()


def test_disconnected_processes_are_refused_with_the_recipe(tmp_path):
    """--multi_gpu on a machine without GPU and without the CPU flag starts two lone processes: refuse clearly."""
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           *train_cmd(tmp_path / "x", "--max_train_steps", "2")[1:]]  # fmt: skip
    r = run(cmd)
    assert r.returncode != 0
    assert "not connected" in r.stderr and "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu" in r.stderr
    assert not (tmp_path / "x" / "unet").exists()


# --------------------------------------------------------------------- kill and resume
def test_sigkilled_run_resumes_to_the_same_weights(tmp_path):
    """On the CPU, where the claim is made: a GPU's kernels may sum in a different order from run to run (atomics in
    convolution backward), so bit-identical resumption there is not promised; on a GPU machine this still runs on the
    CPU."""
    args = ["--max_train_steps", "160", "--checkpointing_steps", "20", "--checkpoints_total_limit", "2"]
    env = base_env(ACCELERATE_USE_CPU="1")
    straight = run(train_cmd(tmp_path / "straight", *args), env)
    assert straight.returncode == 0, straight.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(out, *args), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints" / "checkpoint-40").is_dir():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "unet").exists()
    latest = find_checkpoint(out, "latest")
    assert latest is not None and int(latest.name.split("-")[1]) >= 40
    # a kill during saving leaves only a temporary folder, which is never taken as the latest checkpoint
    (out / "checkpoints" / ".tmp-checkpoint-999").mkdir()
    assert find_checkpoint(out, "latest") == latest

    resumed = run(train_cmd(out, *args, "--resume_from_checkpoint", "latest"), env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {latest}" in resumed.stdout
    assert digests(resumed.stdout)[0] == digests(straight.stdout)[0]
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (out / weights).read_bytes() == (tmp_path / "straight" / weights).read_bytes()  # EMA weights too
    assert len(list((out / "checkpoints").glob("checkpoint-*"))) <= 2  # checkpoints_total_limit


@pytest.mark.parametrize("device", DEVICES)
def test_training_runs_on_every_device_with_the_images_kept_there(device, tmp_path):
    """The same command on each device present (the CPU everywhere; CUDA where a GPU is): on a GPU the in-memory
    images live in its memory, so no batch is copied from the host; a run resumed from a checkpoint trains on (the
    EMA's weights come back from the file on the CPU: on CUDA its first step failed until they were moved); the model
    it writes samples in range."""
    out, env = tmp_path / device, base_env(**({"ACCELERATE_USE_CPU": "1"} if device == "cpu" else {}))
    r = run(train_cmd(out, "--max_train_steps", "6", "--checkpointing_steps", "3"), env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"1437 images (in {device} memory)" in r.stdout and f"1 process(es) on {device}" in r.stdout
    r = run(train_cmd(out, "--max_train_steps", "6", "--resume_from_checkpoint", "checkpoint-3"), env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout and "at step 3" in r.stdout
    model = load_pipeline(str(out))
    x = sample(model.unet, model.scheduler, 2, sampler="ddim", num_inference_steps=4)
    assert torch.isfinite(x).all() and x.abs().max() <= 1.0


def test_resume_from_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code = train_accelerate.main(["--output_dir", str(tmp_path), *SMALL, "--resume_from_checkpoint", "checkpoint-7"])
    assert code == 2
    assert "checkpoint checkpoint-7 not found" in capsys.readouterr().err


# --------------------------------------------------------------------- output folder, Hub round trip
@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Train a tiny model with --push_to_hub against a Hub server on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("hub")
    with FakeHub() as hub:
        env = base_env(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_TOKEN=hub.token,
                       HF_HOME=str(tmp / "hf_home"))  # fmt: skip
        out = tmp / "model"
        r = run(train_cmd(out, "--max_train_steps", "4", "--checkpointing_steps", "2", "--push_to_hub",
                          "--hub_model_id", "alice/ddpm-test"), env)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        pull = run([PY, "-c", "from ddpm.hub import load_pipeline; from ddpm.checkpoints import weights_digest; "
                    "m = load_pipeline('alice/ddpm-test'); print('PULLED', weights_digest(m.unet), m.path)"], env)  # fmt: skip
        bad = run([PY, "-c", "from ddpm.hub import load_pipeline\ntry:\n load_pipeline('alice/nope')\n"
                   "except Exception as e: print('ERR', type(e).__name__, e)"], env)  # fmt: skip
        commits_first = len(hub.repos["alice/ddpm-test"].commits)
        again = run(train_cmd(tmp / "again", "--max_train_steps", "4", "--checkpointing_steps", "2", "--push_to_hub",
                              "--push_checkpoints", "--hub_model_id", "alice/ddpm-test"), env)  # fmt: skip
        failed = run(train_cmd(tmp / "failed", "--max_train_steps", "2", "--push_to_hub", "--hub_model_id", "alice/other"),
                     {**env, "HF_TOKEN": "hf_wrong"})  # fmt: skip
        named = run(train_cmd(tmp / "ddpm-unnamed", "--max_train_steps", "1", "--push_to_hub"), env)  # diffusers' way
        yield {"out": out, "hub": hub, "train": r, "pull": pull, "bad": bad, "env": env, "again": again,
               "failed": failed, "tmp": tmp, "commits_first": commits_first, "named": named}  # fmt: skip


def test_push_uploads_the_model_folder_only(pushed):
    files = pushed["hub"].repos["alice/ddpm-test"].files
    expected = {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                "scheduler/scheduler_config.json", "README.md", "samples.png"}  # fmt: skip
    assert expected <= set(files)
    assert not [f for f in files if f.startswith(("checkpoints/", "logs/"))]
    token = pushed["hub"].token.encode()
    assert not [f for f, data in files.items() if token in data]  # the token is never written anywhere
    assert pushed["hub"].token not in pushed["train"].stdout + pushed["train"].stderr
    assert (
        files["unet/diffusion_pytorch_model.safetensors"]
        == (pushed["out"] / "unet/diffusion_pytorch_model.safetensors").read_bytes()
    )


def test_push_to_hub_alone_names_the_repo_after_the_output_folder_as_diffusers_does(pushed):
    r = pushed["named"]
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"pushed to {pushed['hub'].url}/alice/ddpm-unnamed" in r.stdout  # the token's user, the folder's name
    assert "unet/diffusion_pytorch_model.safetensors" in pushed["hub"].repos["alice/ddpm-unnamed"].files


def test_a_second_push_and_checkpoint_pushes_go_to_the_same_repo(pushed):
    assert pushed["again"].returncode == 0, pushed["again"].stderr[-3000:]
    repo = pushed["hub"].repos["alice/ddpm-test"]
    assert len(repo.commits) == pushed["commits_first"] + 2  # the checkpoint at step 2, then the final model
    assert f"pushed to {pushed['hub'].url}/alice/ddpm-test" in pushed["again"].stdout  # the URL follows HF_ENDPOINT
    weights = (pushed["tmp"] / "again" / "unet/diffusion_pytorch_model.safetensors").read_bytes()
    assert repo.files["unet/diffusion_pytorch_model.safetensors"] == weights


def test_a_failed_push_keeps_the_model_and_says_how_to_retry_in_one_line(pushed):
    r = pushed["failed"]
    out = pushed["tmp"] / "failed"
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert (out / "unet/diffusion_pytorch_model.safetensors").is_file()
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: the model is saved at {out}, but the upload to alice/other failed: ")
    retry = f'hf upload alice/other {out} . --exclude "checkpoints/*" --exclude "logs/*"'
    assert line.endswith(f"Retry the upload alone with: {retry}")


def test_pull_back_gives_identical_weights(pushed):
    assert pushed["pull"].returncode == 0, pushed["pull"].stderr[-2000:]
    pulled = re.search(r"PULLED (\w+)", pushed["pull"].stdout).group(1)
    assert pulled == weights_digest(load_pipeline(str(pushed["out"])).unet)
    assert "ERR ModelLoadError model alice/nope was not found on the Hub" in pushed["bad"].stdout


def test_model_card_has_hub_metadata(pushed):
    card = (pushed["out"] / "README.md").read_text()
    front = card.split("---")[1]
    for line in ("library_name: diffusers", "pipeline_tag: unconditional-image-generation", "- ddpm", "license: mit"):
        assert line in front
    assert 'DDPMPipeline.from_pretrained("alice/ddpm-test")' in card and "MODEL_ID=alice/ddpm-test python app.py" in card
    assert "| `max_train_steps` | `4` |" in card and "hub_token" not in card
    assert re.search(r"Final training loss .*: \d+\.\d{4}", card)
    assert "split **train**: 1,437 images" in card and "CC BY 4.0" in card  # the data: source, split, count, licence
    assert re.search(r"4 steps of 8 images .*this run did steps 1-4 in \d+ min of wall clock on 1 process", card)
    assert "@inproceedings{ho2020denoising" in card and "## Limitations" in card
    assert "huggingface.co/spaces)" not in card  # no placeholder link
    assert str(pushed["tmp"]) not in card and "Weights are the EMA of the training weights." in card  # no local paths


def test_model_card_says_what_the_weights_are_and_where_they_came_from(tmp_path):
    from huggingface_hub import ModelCard

    args = {"output_dir": str(tmp_path / "home" / "bob" / "run"), "train_data_dir": "/data/bob/cats", "use_ema": False}
    path = write_model_card(tmp_path, repo_id="alice/cats", dataset="cats", training_args=args, final_loss=0.1,
                            num_parameters=10, resolution=8, ema=False, base_model="google/ddpm-cifar10-32")  # fmt: skip
    card = ModelCard.load(path)  # huggingface_hub reads back what it wrote
    assert card.data.base_model == "google/ddpm-cifar10-32" and card.data.library_name == "diffusers"
    assert "Weights are the training weights (no EMA)." in card.text and "EMA of the training" not in card.text
    assert "Fine-tuned from [google/ddpm-cifar10-32]" in card.text
    assert "/data/bob" not in card.text and "home/bob" not in card.text  # local paths: their last part only
    assert "| `train_data_dir` | `cats` |" in card.text and "| `output_dir` | `run` |" in card.text


def test_the_card_says_when_the_network_was_compiled():
    """accelerate's dynamo settings (flags or ACCELERATE_DYNAMO_* variables) reach the card's Training line."""
    from accelerate.utils import TorchDynamoPlugin

    assert compile_note(TorchDynamoPlugin(backend="no")) == ""
    note = compile_note(TorchDynamoPlugin(backend="inductor", mode="reduce-overhead"))
    assert note == ", the network under torch.compile (inductor, mode reduce-overhead)"


def test_model_card_of_a_local_model_loads_it_from_its_folder(tmp_path):
    out = tmp_path / "my-model"
    out.mkdir()
    card = write_model_card(out, repo_id=None, dataset="digits", training_args={}, final_loss=None, num_parameters=10,
                            resolution=8).read_text()  # fmt: skip
    assert card.splitlines()[card.splitlines().index("---", 1) + 2] == "# my-model"
    assert f"MODEL_ID={out.as_posix()} python app.py" in card
    assert f'DDPMPipeline.from_pretrained("{out.as_posix()}")' in card
    assert f'ddim = DDIMPipeline.from_pretrained("{out.as_posix()}")' in card and "use_clipped_model_output=True" in card
    assert 'DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace", thresholding' in card


def test_output_folder_is_a_diffusers_ddpm_pipeline(pushed):
    """The saved scheduler clips x̂0 (diffusers' default, --clip_sample): diffusers' pipeline and ours read it."""
    pipe = DDPMPipeline.from_pretrained(pushed["out"])
    assert pipe.scheduler.config.clip_sample is True
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(1), num_inference_steps=20, output_type="pt").images
    assert theirs.shape == (2, 1, 8, 8)
    ours = load_pipeline(str(pushed["out"]))
    assert ours.scheduler.config.clip_sample is True
    x = sample(ours.unet, ours.scheduler, 2, generator=torch.Generator().manual_seed(1))
    assert torch.allclose((x / 2 + 0.5).clamp(0, 1), theirs, atol=1e-3)
    # the card's DDIM line: with all T = 20 steps diffusers' "leading" walk is ours, so the images are ours too
    ddim = DDIMPipeline.from_pretrained(pushed["out"])
    ddim.set_progress_bar_config(disable=True)
    theirs = ddim(batch_size=2, generator=torch.Generator().manual_seed(2), num_inference_steps=20,
                  use_clipped_model_output=True, output_type="pt").images  # fmt: skip
    x = sample(ours.unet, ours.scheduler, 2, sampler="ddim", num_inference_steps=20, generator=torch.Generator().manual_seed(2))
    assert torch.allclose((x / 2 + 0.5).clamp(0, 1), theirs, atol=1e-3)
    # the card's DPM-Solver++ line: diffusers' DPMSolverMultistepScheduler in the same pipeline takes our dpm2m steps
    # (16 steps: below 15 diffusers makes its second-last step first order too)
    config = dict(timestep_spacing="linspace", thresholding=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, **config)
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=16, output_type="pt").images
    walk = [int(t) for t in pipe.scheduler.timesteps] + [-1]
    x, last = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)), None
    with torch.no_grad():
        for t, prev in zip(walk, walk[1:], strict=False):
            out = ours.scheduler.dpm_solver_2m_step(ours.unet(x, torch.tensor(t)).sample, t, x, prev, last)
            x, last = out.prev_sample, (out.pred_original_sample, t)
    assert walk[0] == 19 and torch.allclose((x / 2 + 0.5).clamp(0, 1), theirs, atol=1e-3)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "args, message",
    [
        (["--train_data_dir", "EMPTY"], "no images found in"),
        (["--image_column", "pixels"], "no column 'pixels' in the data set: its columns are image, label"),
        (["--resolution", "10"], "resolution 10 does not fit the 'tiny' preset: use a multiple of 4"),
        (["--channels", "2"], "--channels must be 1 (grayscale) or 3 (RGB), got 2"),
        (["--push_to_hub"], "--push_to_hub: could not create the model repo out on the Hub"),  # offline here
        (["--eval_sampler", "foo"], "unknown eval_sampler 'foo': use one of ddpm, respaced, ddim, dpm2m"),
        (["--loss_type", "foo"], "unknown loss_type 'foo': use one of l2, l1, huber"),
        (["--max_train_steps", "0"], "--max_train_steps 0 would train nothing: give 1 or more"),
        (["--max_train_steps", "-5"], "--max_train_steps -5 would train nothing"),
        (["--beta_schedule", "quadratic"], "unknown beta_schedule 'quadratic'"),
    ],
)
def test_bad_input_gets_one_line_errors(tmp_path, capsys, args, message):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in args]
    code = train_accelerate.main(["--output_dir", str(tmp_path / "out"), *SMALL, "--max_train_steps", "1", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_a_diffusers_style_command_runs_and_logs_sample_images(tmp_path):
    """train_unconditional.py's flag names are aliases; every flag has help; the sample grid reaches the tracker."""
    parser = train_accelerate.build_parser()
    assert all(a.help and a.help.strip() for a in parser._actions if a.dest != "help")
    logs = tmp_path / "tb"
    cmd = train_cmd(tmp_path / "out", "--ddpm_num_steps", "20", "--ddpm_beta_schedule", "linear", "--logger", "all",
                    "--logging_dir", str(logs), "--dataloader_num_workers", "2", "--save_images_epochs", "1",
                    "--save_model_epochs", "1", "--num_epochs", "2", "--train_batch_size", "720",
                    "--dataset_split", "test", "--overwrite_output_dir", "--local_rank", "-1",
                    "--ddpm_num_inference_steps", "10", "--enable_xformers_memory_efficient_attention")  # fmt: skip
    r = run(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs / "ddpm"), size_guidance={"images": 0}).Reload()  # the run's own events
    assert "samples" in events.Tags()["images"] and "loss" in events.Tags()["scalars"]
    assert [e.step for e in events.Images("samples")] == [1, 2]  # 360 test digits / 720 a batch: one step an epoch
    assert (tmp_path / "out" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_ctrl_c_ends_with_one_line_naming_the_checkpoint_and_the_resume(tmp_path):
    out = tmp_path / "stopped"
    args = ["--max_train_steps", "100000", "--checkpointing_steps", "5"]
    proc = subprocess.Popen(train_cmd(out, *args), env=base_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints" / "checkpoint-10").is_dir():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("train:")]  # less the progress bar
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert re.fullmatch(rf"interrupted: the last checkpoint is {re.escape(str(out))}/checkpoints/checkpoint-\d+; run the "
                        r"same command with --resume_from_checkpoint latest to go on", lines[0]), lines[0]  # fmt: skip


def test_the_first_ctrl_c_waits_for_the_step_and_the_second_interrupts_at_once():
    before = signal.getsignal(signal.SIGINT)
    with stop_between_steps() as ctrl_c:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler before the next line
        except KeyboardInterrupt:
            pytest.fail("the first Ctrl-C interrupted the step in hand")
        assert ctrl_c.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # not reached: the second Ctrl-C interrupts
    assert signal.getsignal(signal.SIGINT) is before


def test_a_mistyped_flag_is_one_line_with_the_nearest_flag():
    r = run([PY, str(ROOT / "train_accelerate.py"), "--lerning_rate", "1e-3"])
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.strip() == "error: unrecognized arguments: --lerning_rate 1e-3 (did you mean --learning_rate?); see --help"


def test_channels_come_from_the_data(tmp_path):
    """RGB pictures train an RGB model and grey ones (even saved as RGB files) a 1-channel one, unless --channels says."""
    import numpy as np
    from PIL import Image

    for name, colour in (("rgb", True), ("grey", False)):
        folder = tmp_path / name
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(a if colour else np.repeat(a[..., :1], 3, axis=2), "RGB").save(folder / f"{i}.png")
        r = run(train_cmd(tmp_path / f"out-{name}", "--train_data_dir", str(folder), "--max_train_steps", "1",
                          "--eval_batch_size", "0", "--model_preset", "nano"))  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        expected = 3 if colour else 1
        assert f"channels: {expected} ({'RGB' if colour else 'grayscale'}, from the data" in r.stdout
        assert load_pipeline(str(tmp_path / f"out-{name}")).unet.config.in_channels == expected
