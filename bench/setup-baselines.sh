#!/usr/bin/env bash
# Makes the Python environment of the CPU benchmark's baselines: a venv with PyTorch 2.x
# (CPU wheel) and transformers, from the machine's configured pip index (pip.conf,
# PIP_* variables, find-links); nothing is installed outside the venv.
#
#   bash bench/setup-baselines.sh [VENV]     (default /tmp/hopscotch-bench-venv)
# Prints the venv's python path on the last line.
set -euo pipefail
VENV="${1:-/tmp/hopscotch-bench-venv}"
PYTHON_BASE="${PYTHON_BASE:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BASE" -m venv "$VENV"
fi
# --retries 0: an index that cannot be reached (no network) is skipped at once
# instead of after minutes of back-off; the reachable ones still answer.
"$VENV/bin/python" -m pip install --quiet --retries 0 --upgrade-strategy only-if-needed \
  'torch>=2.0' 'transformers>=4.40' 'safetensors' 'numpy' >&2
"$VENV/bin/python" - >&2 <<'PY'
import torch, transformers
print(f"torch {torch.__version__} ({torch.backends.mkldnn.is_available() and 'oneDNN' or 'no oneDNN'}), "
      f"transformers {transformers.__version__}")
PY
echo "$VENV/bin/python"
