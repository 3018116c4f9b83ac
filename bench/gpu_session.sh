#!/usr/bin/env bash
# The GPU measurements of "fast on a GPU" in one prepared run, for a machine lent for minutes:
# every step has its own time limit, and whatever finished comes back in $OUT.
#
# On this machine, from the repository root:
#   ../shared/hooks/device-prep mnist
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl fairlearn narwhals
# then on the device (carry .whl and .carry), after the prefix device-prep prints:
#   bash bench/gpu_session.sh
# Locally, to check the script itself on a CPU in a minute:
#   SMOKE=1 OUT=/tmp/session bash bench/gpu_session.sh
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
log="$OUT/session.log"
smoke=${SMOKE:-}

step() {  # step LIMIT_SECONDS COMMAND...: run, log, and go on whatever happens
    local limit=$1 start=$SECONDS
    shift
    echo "== $* (limit ${limit} s)" >>"$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "== exit $?, $((SECONDS - start)) s" >>"$log"
}

echo "$(date -u) on $(hostname); $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null)" >"$log"
if [ -n "$smoke" ]; then
    step 600 python3 bench/bench_gpu.py --device cpu --small --precisions fp32,bf16 --compile --save-rates "$OUT/rates.json"
else
    # the engine's settings against their fp32 / unstacked / eager baselines, and the quickstart auto vs cpu
    step 360 python3 bench/bench_gpu.py --quickstart --compile --save-rates "$OUT/rates.json"
fi
# the paper-budget estimate from those rates (target: <= 8 H200-hours)
step 60 python3 -m fairbench run suites/celeba_male_attractive.yaml --dry-run --rates "$OUT/rates.json" \
    --results "$OUT/none"
# GBA's Colored MNIST suite on the full MNIST: one seed per run of the script, all of the GPU
if [ -n "$smoke" ]; then
    where=(--device cpu --workers 2 --set budget=quick --set "seeds=[0]" --set "methods=[{method: erm, params: {arch: mlp3}}]")
else
    where=(--devices all --jobs-per-device 10 --set "seeds=${SEEDS:-[0, 1]}")
fi
for precision in fp32 bf16; do
    step 240 python3 -m fairbench run suites/gba_cmnist.yaml "${where[@]}" --precision "$precision" \
        --results "$OUT/gba_$precision"
    step 60 python3 -m fairbench report "$OUT/gba_$precision"
done
tar czf "$OUT/results.tgz" -C "$OUT" --exclude results.tgz . 2>/dev/null
echo "done: $log, $OUT/rates.json, $OUT/results.tgz"
