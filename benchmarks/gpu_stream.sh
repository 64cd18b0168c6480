#!/usr/bin/env bash
# Issue 11's GPU check: the transformer format's compact rows expanded ON THE GPU, at full scale
# (9 graphs x 256 rows x 64 negatives a step), beside index batches, in one command (target: under
# 5 minutes, build included).
#
#   bash benchmarks/gpu_stream.sh           # from the repository root; PYTHON=... to pick the interpreter
#
# 1. builds (once; reused while current) the stream benchmark's full-scale synthetic build under
#    data/bench/stream-out/full1 (one dask worker per core);
# 2. runs `python -m benchmarks stream --device cuda --formats index transformer --batch-sizes 64`:
#    every batch moved to the GPU (pinned, non-blocking) and expanded there, through 0 and 2 workers,
#    and the expansion rate of a step's rows on the GPU against numpy on the CPU; prints the table and
#    writes bench-results/stream-gpu.json (and the log next to it).
SECONDS_EACH=${SECONDS_EACH:-3}

. "$(dirname "$0")/_gpu.sh"
need_cuda

start=$(date +%s)
timed_build stream
PYTHONPATH=. "$PY" -m benchmarks stream --workdir data/bench --device cuda --formats index transformer \
    --batch-sizes 64 --peers none --seconds "$SECONDS_EACH" --json "$OUT/stream-gpu.json" 2>&1 \
    | tee "$OUT/stream-gpu.log"
echo "gpu_stream.sh: $(( $(date +%s) - start )) s in all" >&2
