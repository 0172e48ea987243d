#!/usr/bin/env bash
# The GPU suite on a bare GPU machine: make fairgen importable, then run benchmarks/gpu_suite.py.
# Results land in $OUT (else ./gpu_suite_out). Extra arguments go to the Python script
# (e.g. --dry-run, --budget-s 420, --skip demo).
#
# A GPU machine of this workplace has torch, torchvision, scikit-learn, pandas, matplotlib,
# safetensors, einops and tqdm, but no package registry. What it lacks (fairlearn,
# pytorch-pretrained-biggan, ...) travels as wheels in .whl/ (see the device tool's README);
# where a registry is reachable, pip fetches them instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=${FAIRGEN_SITE:-/tmp/fairgen-site}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE:${PYTHONPATH:-}"
fi
missing=$($PY - <<'PY'
import importlib.util as u
need = {"fairlearn": "fairlearn", "pytorch_pretrained_biggan": "pytorch-pretrained-biggan", "einops": "einops",
        "safetensors": "safetensors", "sklearn": "scikit-learn", "tqdm": "tqdm", "pandas": "pandas",
        "matplotlib": "matplotlib", "scipy": "scipy", "threadpoolctl": "threadpoolctl"}
print(" ".join(dist for mod, dist in need.items() if u.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing: $missing"
  $PY -m pip install -q --target "$SITE" $missing
  export PYTHONPATH="$SITE:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"  # fairgen, steering, audits from this checkout
exec $PY benchmarks/gpu_suite.py "$@"
