#!/usr/bin/env bash
# Creates .venv (or $VENV) and installs restyle-bot into it, tests extras when asked:
#   scripts/install.sh            the bot
#   scripts/install.sh test       the bot and what the tests need
# torch comes first: a CUDA build where an NVIDIA GPU is present, the CPU build elsewhere
# (an unpinned torch from PyPI is a multi-GB CUDA build even on machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
extra=${1:-}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
py="$VENV/bin/python"

if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing torch $TORCH_VERSION with CUDA"
    "$py" -m pip install "torch==$TORCH_VERSION"
  else
    echo "No NVIDIA GPU: installing the CPU build of torch $TORCH_VERSION"
    # The CPU wheel index first; where it cannot be reached (an offline mirror), pip's own
    # configuration decides, which on such machines carries a local CPU wheel.
    "$py" -m pip install --retries 0 --timeout 15 \
        --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION" 2>/dev/null \
      || "$py" -m pip install "torch==$TORCH_VERSION"
  fi
fi

if [ "$extra" = "test" ]; then
  "$py" -m pip install -e ".[test]"
else
  "$py" -m pip install -e .
fi
