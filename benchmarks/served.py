"""What a visitor waits for: sampling runs served by the real Space (`python app.py` on 127.0.0.1, asked through
gradio_client as any API caller asks), each paired with the network's own calls for the same run (same batch, same
number of calls) timed in this process right after it, the server idle. served / network alone is what the Space
adds to the network: the sampler's arithmetic, the frames it draws and writes (previews, GIF, gallery, zip,
scrubber) and Gradio's streaming.

    python -m benchmarks.served --out served.json        # then: python -m benchmarks --served served.json --update ...

Runs on the bundled Fashion-MNIST model (the Space's default), 16 images, fp32, with the request limit raised so
that no run is stopped. The first run of each sampler is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import report
from benchmarks.harness import generate_through, network_alone, paired, peak_rss_mb, start_server
from ddpm import space
from ddpm.hub import load_pipeline
from ddpm.sampling import walk

CASES = (("ddpm", None), ("dpm2m", 50), ("ddim", 50))  # (sampler, steps): all T ancestral steps, two 50-step ones


def measure(repeats: int = 3, images: int = 16, cases=CASES) -> dict:
    from gradio_client import Client

    model = load_pipeline(space.BUNDLED_MODEL)
    T = model.scheduler.num_train_timesteps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server({"TMPDIR": tmp, "DDPM_MAX_REQUEST_S": "3600"})
        try:
            client = Client(url, verbose=False, download_files=False)  # a browser fetches pictures as it shows them
            for sampler, steps in cases:
                timesteps = walk(T, sampler, steps)
                row = {"sampler": sampler, "steps": steps or T, "calls": len(timesteps), "served": [], "network": [], "first": []}
                for r in range(repeats + 1):
                    first, total, status = generate_through(client, r, images, sampler, steps)
                    alone = network_alone(model.unet, images, timesteps)
                    assert status.startswith("done:"), status
                    if r:  # the first is a warm-up
                        row["served"].append(total), row["network"].append(alone), row["first"].append(first)
                    print(f"  {sampler}-{row['steps']}: served {total:.2f} s (first frame {first:.2f} s), network alone "
                          f"{alone:.2f} s", flush=True)  # fmt: skip
                row.update(paired(row["served"], row["network"]))
                rows.append(row)
            peak = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"images": images, "precision": "fp32", "T": T, "rows": rows, "peak_rss_mb": peak,
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    result = measure(a.repeats)
    Path(a.out).write_text(json.dumps(result, indent=1))
    for row in result["rows"]:
        print(f"{row['sampler']}-{row['steps']}: served / network {row['ratio']:.2f}x "
              f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}), target {report.served_target(row, result['T'])}x")  # fmt: skip


if __name__ == "__main__":
    main()
