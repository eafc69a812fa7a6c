#!/usr/bin/env bash
# The GPU checks of srframe.ops, in one command, on a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu_check.sh [bench_ops.py options, e.g. --sweep]
#
# (a) tests/test_ops.py on CUDA: the Triton kernels against the reference, values and gradients;
# (b) benchmarks/bench_ops.py: batch 16, 64 output channels, 96x96 output, bf16, fused against
#     eager pixel_shuffle + prelu, forward and forward+backward, and the forward's memory bandwidth;
# (c) benchmarks/bench_inference.py on CUDA: SRResNet x4 eager against optimize_for_inference.
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
  for wheel in .whl/*.whl; do [ -e "$wheel" ] && "$PYTHON" -m zipfile -e "$wheel" "$site"; done
  if ! "$PYTHON" -m pip install -q --no-deps --no-index --no-build-isolation --no-compile --target "$site" .; then
    echo "pip could not build srframe here; announcing its entry points by hand instead"
    "$PYTHON" - "$site" <<'PY' || exit 1
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"srframe-{project['version']}.dist-info"
info.mkdir()
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: srframe\nVersion: {project['version']}\n")
points = "".join(f"{name} = {target}\n" for name, target in project["entry-points"]["srframe"].items())
(info / "entry_points.txt").write_text(f"[srframe]\n{points}")
PY
    ln -s "$PWD/srframe" "$site/srframe" && ln -s "$PWD/plugins" "$site/srframe_plugins"
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

status=0
echo "== (a) tests/test_ops.py on CUDA"
"$PYTHON" -m pytest tests/test_ops.py -q -p no:cacheprovider || status=1
echo "== (b) op benchmark"
"$PYTHON" benchmarks/bench_ops.py "$@" || status=1
echo "== (c) SRResNet x4 inference, plain against optimize_for_inference"
"$PYTHON" benchmarks/bench_inference.py --device cuda --rounds 20 || status=1
exit $status
