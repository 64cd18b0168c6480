# Shared by the GPU checks (gpu_stream.sh, gpu_train.sh), sourced first: strict mode, the repository root
# as the working directory, PY (the interpreter: $PYTHON, else .venv/bin/python, else python) and OUT
# (where results go: $OUT_DIR, else bench-results), and:
#   need_cuda               exit with one error line unless torch sees a CUDA device
#   timed_build MODULE      MODULE.ensure_build(data/bench, scale 1), its time on stderr (the benchmark
#                           would build it too: timed apart so the table's run time is visible)

set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${OUT_DIR:-bench-results}
mkdir -p "$OUT"

need_cuda() {
    "$PY" - <<'PYEOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA device; this script needs a GPU build of torch")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB", file=sys.stderr)
PYEOF
}

timed_build() {
    PYTHONPATH=. "$PY" -c "
import sys, time
from pathlib import Path
from benchmarks.$1 import ensure_build
if __name__ == '__main__':
    t0 = time.perf_counter()
    b = ensure_build(Path('data/bench'), 1.0)
    print(f'build {b} ready in {time.perf_counter() - t0:.0f} s', file=sys.stderr)
"
}
