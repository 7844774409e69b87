#!/usr/bin/env bash
# The prepared GPU measurement for docs/performance.md (issue 5): speed against the fp32 eager batch-1
# baseline at 256 and 512 with counted FLOPs and the share of the peak, then the largest batch that fits
# in 24 GB at 512 with and without bf16 + --grad_checkpoint. Sized for one 10-minute device call; not yet run.
# Usage: bash scripts/gpu_check.sh OUT_DIR [PEAK_TFLOPS]  (989: H100/H200 dense bf16)
set -euo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [PEAK_TFLOPS]}
peak=${2:-989}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
bench() { python scripts/benchmark.py --device cuda --peak_tflops "$peak" --steps 20 --repeats 3 --warmup 3 "$@"; }
bench --netG unet_256 --crop_size 256 --configs bf16,cl bf16,cl,compile bf16,cl,bs16 bf16,cl,bs64 \
    --roofline --json "$out/gpu_unet256.json" 2>&1 | tee "$out/gpu_unet256.txt"
bench --netG unet_512 --crop_size 512 --configs bf16,cl bf16,cl,compile bf16,cl,bs8 bf16,cl,bs32 \
    --json "$out/gpu_unet512.json" 2>&1 | tee "$out/gpu_unet512.txt"
python scripts/benchmark.py --device cuda --netG unet_512 --crop_size 512 --configs bf16 bf16,gc --max_batch 24 \
    --json "$out/gpu_maxbatch512.json" 2>&1 | tee "$out/gpu_maxbatch512.txt"
