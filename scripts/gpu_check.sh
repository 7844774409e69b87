#!/usr/bin/env bash
# The prepared GPU check for docs/performance.md (issues 15 and 23), sized for one device call of under 8 minutes:
#   1. CPU vs CUDA agreement in fp32 with TF32 off (G and D at 256 and 512);
#   2. speed against the fp32 eager batch-1 baseline at 256 and 512 (fp32 and bf16 + channels_last at the same
#      batches, --cuda_graph at batch 1), with counted FLOPs and the share of the peak; torch.compile's
#      reduce-overhead mode in a stage of its own (its first compile is long);
#   3. the largest batch in 24 GB at 512: fp32, bf16, bf16 + --grad_checkpoint;
#   4. the loader at 512 with --cache_images and --device_preprocess: data wait at a large batch;
#   5. train.py beside the reference implementation at batch 1 and 512 (REFERENCE: a checkout of it);
#   6. a real run: train.py 572->512 with bf16 + channels_last for 50 steps, --continue_train for 10, test.py.
# Every stage has its own time limit and writes JSON under OUT_DIR, so a failing or slow stage costs only itself;
# each prints a line per measurement as it goes. scripts/gpu_report.py then writes OUT_DIR/summary.md (tables for
# the docs, issue 23's targets met or not) and summary.json. The script prints its elapsed time per stage and in all.
#
# Usage: bash scripts/gpu_check.sh OUT_DIR [PEAK_TFLOPS]   (989: H100/H200 dense bf16)
# The device tool returns at most 8 files: end the call with
#   tar czf "$OUT/gpu_check.tgz" -C "$(dirname OUT_DIR)" "$(basename OUT_DIR)"; cp OUT_DIR/summary.md "$OUT/"
# Data: DATAROOT (default datasets/polyu512, 36 MB: build it with datasets/build_study_data.py polyu; git-ignored;
# name it in the device call's carry); without it a 512 demo set is built offline. The device image lacks
# dominate: put its wheel in .device/wheels (pip download --no-deps -d .device/wheels dominate) and carry
# .device; it is installed from there. REFERENCE (default .device/reference): the reference implementation's
# files (git archive 2a7afba of L22000011/pytorch-CycleGAN-and-pix2pix); stage 5 is skipped without it.
# SMOKE=1 runs every stage tiny on the CPU, to test this script here.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [PEAK_TFLOPS]}
peak=${2:-989}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
t_start=$(date +%s)
: >"$out/stages.txt"
: >"$out/gpu.txt"

# stage NAME SECONDS COMMAND...: run with a time limit, log to OUT_DIR/NAME.log, record status and seconds.
stage() {
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc ${limit}s-limit took=$(($(date +%s) - t0))s" | tee -a "$out/stages.txt"
    tail -n 25 "$out/$name.log"
}

if [ -d .device/wheels ]; then
    $PY -m pip install -q --no-index --find-links .device/wheels dominate 2>&1 | tail -2
fi
if [ "${SMOKE:-0}" = 1 ]; then
    dev=cpu; s256=32; s512=64; nd=(--num_downs 5); steps=(--steps 1 --repeats 1 --warmup 1); n_train=4
    cfg256=(bs2 bf16,cl,bs2); cfg512=(bs2); cfg512c=(bs2); load=72; crop=64; agree=(unet_256:256); ref_iters=(1 2)
else
    dev=cuda; s256=256; s512=512; nd=(); steps=(--steps 10 --repeats 3 --warmup 3); n_train=50
    # fp32 and bf16 + channels_last at each batch (bf16 must never be slower); --cuda_graph at batch 1
    cfg256=(bf16,cl graph bf16,cl,graph bs16 bf16,cl,bs16 bs64 bf16,cl,bs64)
    cfg512=(bf16,cl graph bf16,cl,graph bs8 bf16,cl,bs8 bs32 bf16,cl,bs32)
    cfg512c=(bf16,cl,ro)  # compile: about a minute for its first step
    load=572; crop=512; agree=(unet_256:256 unet_512:512); ref_iters=(20 120)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

data=${DATAROOT:-datasets/polyu512}
if [ ! -d "$data/train" ]; then
    data=$out/demo512
    $PY datasets/make_demo_dataset.py --out "$data" --size "$s512" >/dev/null 2>&1
    echo "no $data/train: using the offline demo set at $s512 px" | tee -a "$out/gpu.txt"
fi

bench=($PY scripts/benchmark.py --device "$dev" --peak_tflops "$peak" "${steps[@]}")
small=(--ngf 8 --ndf 8)
[ "${SMOKE:-0}" = 1 ] || small=()

stage agreement 40 $PY scripts/cuda_agreement.py --device "$dev" --json "$out/agreement.json" --sizes "${agree[@]}"
stage unet256 60 "${bench[@]}" --netG unet_256 --crop_size "$s256" "${small[@]}" "${nd[@]}" --configs "${cfg256[@]}" \
    --json "$out/unet256.json"
stage unet512 120 "${bench[@]}" --netG unet_512 --crop_size "$s512" "${small[@]}" "${nd[@]}" --configs "${cfg512[@]}" \
    --json "$out/unet512.json"
stage unet512compile 120 "${bench[@]}" --netG unet_512 --crop_size "$s512" "${small[@]}" "${nd[@]}" \
    --configs "${cfg512c[@]}" --json "$out/unet512compile.json"
if [ "$dev" = cuda ]; then
    stage maxbatch512 75 $PY scripts/benchmark.py --device cuda --netG unet_512 --crop_size 512 \
        --configs bf16 bf16,gc --max_batch 24 --max_batch_limit 128 --json "$out/maxbatch512.json"
fi
# Loader: --cache_images (built once) and --device_preprocess at the large batch, 8 workers.
stage data512 60 "${bench[@]}" --netG unet_512 --crop_size "$s512" "${small[@]}" "${nd[@]}" --configs "${cfg512[-1]}" \
    --dataroot "$data" --load_size "$load" --num_threads 8 --cache_images --device_preprocess --json "$out/data512.json"
ref=${REFERENCE:-.device/reference}
if [ -f "$ref/train.py" ]; then
    # flags both programs know: the reference has no unet_512, so both run unet_256 on the 512 crops
    flags="--netG unet_256 --load_size $load --crop_size $crop --num_threads 4"
    fast="graph_bf16=--cuda_graph --amp bf16 --channels_last"
    if [ "${SMOKE:-0}" = 1 ]; then
        flags="--netG unet_256 --load_size 256 --crop_size 256 --ngf 8 --ndf 8 --num_threads 0"; fast="bf16=--amp bf16"
    fi
    stage reference512 150 $PY scripts/reference_speed.py --reference "$ref" --dataroot "$data" --flags "$flags" \
        --iters "${ref_iters[@]}" --repeats 1 --run "$fast" --json "$out/reference512.json"
fi

run=(--dataroot "$data" --checkpoints_dir "$out/ck" --name gpu512 --netG unet_512 --load_size "$load"
    --crop_size "$crop" "${nd[@]}" "${small[@]}" --amp bf16 --channels_last --cache_images --num_threads 8
    --display_id 0 --print_freq 10 --seed 0)
[ "$dev" = cpu ] && run+=(--gpu_ids -1)
t_train=$(date +%s)
stage train 45 $PY train.py "${run[@]}" --stop_after_iters "$n_train" --start_over  # a rerun into OUT_DIR too
stage resume 30 $PY train.py "${run[@]}" --continue_train --stop_after_iters 10
phase=test
[ -d "$data/val" ] && phase=val
stage test 30 $PY test.py --checkpoints_dir "$out/ck" --name gpu512 --dataroot "$data" --phase "$phase" \
    --results_dir "$out/results" --amp bf16 --channels_last
$PY - "$out" "$t_train" <<'EOF'
import json, os, re, sys, time
out, t0 = sys.argv[1], int(sys.argv[2])
def last(name, pattern):
    text = open(os.path.join(out, name + ".log")).read() if os.path.exists(os.path.join(out, name + ".log")) else ""
    found = re.findall(pattern, text)
    return found[-1] if found else None
stages = dict(re.findall(r"^(\w+) rc=(\d+)", open(os.path.join(out, "stages.txt")).read(), re.M))
record = {
    "train_rc": stages.get("train"), "resume_rc": stages.get("resume"), "test_rc": stages.get("test"),
    "s_per_image_last_print": last("train", r"time: ([\d.]+)"),
    "resumed_at": last("resume", r"resuming latest.pth at (epoch \d+, iteration \d+)"),
    "test_metrics": last("test", r"metrics over \d+ images: (.*)"),
    "seconds_train_resume_test": int(time.time()) - t0,
}
json.dump(record, open(os.path.join(out, "train_run.json"), "w"), indent=2)
EOF
$PY scripts/gpu_report.py "$out" >/dev/null
rm -rf "$out/ck" "$out/demo512" "$out/results"
echo "gpu_check.sh: done in $(($(date +%s) - t_start)) s; $out/summary.md"
cat "$out/stages.txt"
