#!/usr/bin/env bash
# The GPU measurements of "fast on a GPU", prepared for a machine lent for 15 minutes (its start
# included) and 600 s a command: every step has its own time limit, and whatever finished comes
# back in $OUT (the benchmark saves its rates after every part, and a suite run keeps its
# finished jobs).
#
# On this machine, from the repository root:
#   ../shared/hooks/device-prep mnist
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl fairlearn narwhals
# then on the device (carry .whl and .carry), after the prefix device-prep prints, one call each:
#   bash bench/gpu_session.sh           # quickstart, rates, the CelebA estimate, gba_cmnist at fp32: <= 540 s
#   bash bench/gpu_session.sh compile   # compiled vs eager steps: <= 200 s, if the lease has it
#   bash bench/gpu_session.sh bf16      # gba_cmnist under bf16: <= 300 s
# and back here, bf16 against fp32 on the same jobs and seeds (the CUDA default's check):
#   fairbench compare OUT/gba_fp32 OUT/gba_bf16
# Locally, to check the script itself on a CPU:
#   SMOKE=1 OUT=/tmp/session bash bench/gpu_session.sh [compile|bf16]
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
log="$OUT/session.log"
smoke=${SMOKE:-}
what=${1:-main}
scale=${SMOKE:+3}  # a 2-core CPU at --small sizes takes longer than the GPU's limits allow
export PYTHONUNBUFFERED=1  # a step stopped at its limit still leaves its lines in the log

step() {  # step LIMIT_SECONDS COMMAND...: run, log, and go on whatever happens
    local limit=$(($1 * ${scale:-1})) start=$SECONDS
    shift
    echo "== $* (limit ${limit} s)" >>"$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "== exit $?, $((SECONDS - start)) s" >>"$log"
}

if [ -n "$smoke" ]; then
    bench=(python3 bench/bench_gpu.py --device cpu --small --precisions fp32,bf16)
    # GBA's Colored MNIST suite, cut to one method and seed at the quick budget for the check
    where=(--device cpu --workers 2 --set budget=quick --set "seeds=[0]" --set "methods=[{method: erm, params: {arch: mlp3}}]")
else
    bench=(python3 bench/bench_gpu.py --precisions fp32,bf16)
    # the paper budget on the full MNIST, all seeds, all of the GPU (target: <= 4 minutes)
    where=(--devices all --jobs-per-device 10)
fi
suite() {  # suite PRECISION LIMIT: GBA's Colored MNIST suite, then its report
    step "$2" python3 -m fairbench run suites/gba_cmnist.yaml "${where[@]}" --precision "$1" --results "$OUT/gba_$1"
    step 30 python3 -m fairbench report "$OUT/gba_$1"
}

echo "$(date -u) on $(hostname), step '$what'; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null)" >>"$log"
case "$what" in
main)
    # the quickstart with --device auto against cpu (target: auto no slower), then the engine's
    # settings against their fp32 / unstacked / alone baselines, the rates saved after each part
    step 60 "${bench[@]}" --parts "" --quickstart
    step 210 "${bench[@]}" --save-rates "$OUT/rates.json"
    # the paper-budget estimate from those rates (target: <= 8 H200-hours)
    step 30 python3 -m fairbench run suites/celeba_male_attractive.yaml --dry-run --rates "$OUT/rates.json" \
        --results "$OUT/none"
    suite fp32 210
    ;;
compile) step 200 "${bench[@]}" --parts "" --compile ;;
bf16) suite bf16 270 ;;
*)
    echo "unknown step '$what': use main, compile or bf16" >&2
    exit 2
    ;;
esac
tar czf "$OUT/results-$what.tgz" -C "$OUT" --exclude '*.tgz' . 2>/dev/null
echo "done: $log, $OUT/rates.json, $OUT/results-$what.tgz"
