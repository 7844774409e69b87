#!/usr/bin/env bash
# One command from a fresh clone to a result page: venv, install, demo data, a short training run, test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -r requirements.txt
# No --dataroot: the offline demo set (edges -> photo) is built in datasets/demo on first use.
"$VENV/bin/python" train.py --name demo --n_epochs 2 --n_epochs_decay 1 --display_id 0 --print_freq 24 "$@"
"$VENV/bin/python" test.py --name demo
echo "Open results/demo/test_latest/index.html (training page: checkpoints/demo/web/index.html)"
