#!/usr/bin/env bash
# One command from a fresh clone to a result page: venv, install, demo data, a short training run, test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -r requirements.txt
# No --dataroot: the offline demo set (degraded -> clean photos) is built in datasets/demo on first use.
# A small U-Net (7 levels, ngf 32) on 128-pixel crops, predicting the correction (--residual): 880 iterations,
# about 3 minutes on 2 CPU cores. Crops without resizing (--preprocess crop) keep the noise as it is.
# Run again, it trains anew: --start_over moves the earlier demo run aside (checkpoints/demo.old-<date>-<time>).
"$VENV/bin/python" train.py --name demo --residual --netG unet_128 --ngf 32 --ndf 32 --preprocess crop \
    --crop_size 128 --n_epochs 6 --n_epochs_decay 5 --display_id 0 --print_freq 80 --seed 0 --start_over "$@"
# The test photos were never trained on; whole 256x256 images, scored against the no-op baseline. A second run
# writes results/demo/test_latest_2 (test.py never replaces results).
"$VENV/bin/python" test.py --name demo --preprocess none
echo "Open the page test.py named above (results/demo/test_latest/index.html the first time; training page:"
echo "checkpoints/demo/web/index.html)"
