#!/usr/bin/env bash
# The `bench train` table at FULL scale on a GPU machine, with the research report's batch sizes
# (index 64, lazy / k-hop / transformer 28), in one command (target: under 5 minutes, build included).
#
#   bash benchmarks/gpu_train.sh            # from the repository root; PYTHON=... to pick the interpreter
#
# 1. builds (once; reused while current) the full-scale synthetic build under data/bench/train-out/train1:
#    9 edge types, ~2.42M gene pairs over 6,607 genes, the Kuzmin-style dataset (~739k samples),
#    masks, 1/2/3-hop sets and 64 steps of adjacency rows (one dask worker per core);
# 2. runs `python -m benchmarks train --scale 1 --device cuda` (every row, our stream and research-code
#    loading through 2 DataLoader workers each), printing the table and writing
#    bench-results/train-gpu.json (and the log next to it).
# Not run yet: no GPU machine was lent to the session that wrote it.
STEPS=${STEPS:-10}
MAX_SECONDS=${MAX_SECONDS:-15}

. "$(dirname "$0")/_gpu.sh"
need_cuda
# research-code batches of the full graph travel through shared memory (~80 MB of edges per sample)
shm=$(df -Pm /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
if [ -n "${shm:-}" ] && [ "$shm" -lt 16384 ]; then
    echo "warning: /dev/shm has ${shm} MiB free; the research lazy row needs ~10 GiB there (2 workers x 2 batches)" >&2
fi

start=$(date +%s)
timed_build train
PYTHONPATH=. "$PY" -m benchmarks train --scale 1 --device cuda --workers 2 --steps "$STEPS" --warmup 2 \
    --max-seconds "$MAX_SECONDS" --json "$OUT/train-gpu.json" 2>&1 | tee "$OUT/train-gpu.log"
echo "gpu_train.sh: $(( $(date +%s) - start )) s in all" >&2
