#!/usr/bin/env bash
# The GPU checks of srframe.ops, in one command, on a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu_check.sh [bench_ops.py options, e.g. --sweep]
#
# (a) tests/test_ops.py on CUDA: the Triton kernels against the reference, values and gradients;
# (b) benchmarks/bench_ops.py: batch 16, 64 output channels, 96x96 output, bf16, fused against
#     eager pixel_shuffle + prelu, forward and forward+backward, and the forward's memory bandwidth.
#
# It uses whatever python3 (or $PYTHON) has torch, triton and pytest. When srframe is not installed
# there, it installs this checkout without dependencies into a scratch folder (the plugins are
# found through its entry points), with any wheels in .whl/ (such as tomli_w, which srframe imports).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

"$PYTHON" -c "import torch, triton; print(f'torch {torch.__version__}, triton {triton.__version__}, '
f'CUDA {torch.version.cuda}, GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else None}')" || exit 1
"$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || { echo "no CUDA GPU here"; exit 1; }

if ! "$PYTHON" -c "import importlib.metadata as m; m.distribution('srframe')" 2>/dev/null; then
  site=$(mktemp -d)
  wheels=$(ls .whl/*.whl 2>/dev/null || true)
  "$PYTHON" -m pip install -q --no-deps --no-index --no-build-isolation --no-compile --target "$site" . $wheels \
    || { echo "could not install srframe into $site"; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

status=0
echo "== (a) tests/test_ops.py on CUDA"
"$PYTHON" -m pytest tests/test_ops.py -q -p no:cacheprovider || status=1
echo "== (b) op benchmark"
"$PYTHON" benchmarks/bench_ops.py "$@" || status=1
exit $status
