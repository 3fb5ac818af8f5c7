#!/usr/bin/env bash
# Create .venv and install dataforge with everything its tests and quickstart need.
# torch is installed first and pinned, so nothing later pulls another build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  # TORCH_INDEX_URL picks the build, e.g. https://download.pytorch.org/whl/cpu (plain PyPI gives CUDA's).
  .venv/bin/python -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  .venv/bin/python -m pip install -q -e ".[test,embed,server,train,benepar,ray]" "torch==2.13.0"
