#!/bin/bash
# The GPU checks, in one go, on a machine with CUDA (about 7 minutes on an H100). Run it alone: timings taken beside
# other GPU work (tests, a training run) measure the contention, not the code.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [FASHION_MNIST_DIR]
#
# 1. the device tests on CUDA: data, sampling and training on every device present, a SIGKILLed run resumed to the
#    same weights (on the CPU, where bit-identical resumption is promised), the Space's choice of device;
# 2. the Space on CUDA through a real server (`python app.py`, gradio_client): 16 images, all T steps;
# 3. training speed against diffusers' loop, the network alone and under torch.compile (benchmarks/gpu.py);
# 4. our whole loop eager, then compiled with CUDA graphs (`gpu loop`).
set -u
out=${1:?give a folder for the results}
data=${2:-}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device here')" || exit 2
$PY -m pytest -q -p no:cacheprovider tests/test_data.py tests/test_sampling.py tests/test_training.py tests/test_space.py \
  -k "device or sigkilled" 2>&1 | tee "$out/tests.log" | tail -5
$PY -c "
import json
from benchmarks.speed import bench_app
json.dump(bench_app(repeats=2), open('$out/space.json', 'w'))" 2>&1 | tee "$out/space.log" | grep -v -i warn
$PY -m benchmarks.gpu speed ${data:+--data_dir "$data"} --compile --out "$out/gpu.json" 2>&1 | tee "$out/speed.log" \
  | grep -a "matmul\|batch "
$PY -m benchmarks.gpu loop ${data:+--data_dir "$data"} --out "$out/loop.json" 2>&1 | tee "$out/loop.log" | grep -a "wrote"
echo "then: python -m benchmarks --gpu-results $out/gpu.json --gpu-loop $out/loop.json --update --skip-speed --skip-digits --skip-fashion"
