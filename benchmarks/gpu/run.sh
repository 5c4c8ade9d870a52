#!/usr/bin/env bash
# Everything a session lent the GPU machine runs in one call (docs/gpu.md): install, the CUDA
# tests, training_time at the full preset, the bf16/torch.compile table, claims on CUDA; then
# one archive of every results folder and the log under $OUT, and a short table printed last.
#
#   bash benchmarks/gpu/run.sh                      # on the GPU machine (device tool, carry .whl)
#   bash benchmarks/gpu/run.sh --device cpu --tiny  # here: the same parts with tiny settings
#   BUDGET_S=240 bash benchmarks/gpu/run.sh --only training_time,claims  # a second call: those parts
#
# Parts run in order of value, each under its own timeout and all under one deadline
# (BUDGET_S seconds from the start, default 450, so the whole ends within 8 minutes and a
# second call fits the 15 minutes of device time); a part that fails or runs out of time is
# recorded with its exit code (124: timeout) and the next one runs. Theory suites that
# compute on the CPU whatever --device says (thm2_variance, thm3_bsn_variance,
# spectral_accuracy, snw_vs_snconv, gradient_bounds) are not run: their rows would carry a
# cuda label over CPU numbers.
set -uo pipefail
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONHASHSEED=0

device=cuda
tiny=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --tiny) tiny=1; shift ;;
        --only) only="$2"; shift 2 ;;
        *) echo "run.sh: unknown argument $1 (--device cuda|cpu, --tiny, --only PART,...)"; exit 2 ;;
    esac
done
[ "${GPU_TINY:-0}" = 1 ] && tiny=1

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root" || exit 2
OUT="${OUT:-$(mktemp -d /tmp/gpu-out.XXXXXX)}"
mkdir -p "$OUT"
work="$(mktemp -d /tmp/gpu-work.XXXXXX)"
start=$(date +%s)
deadline=$((start + ${BUDGET_S:-450}))
log="$work/run.log"
parts=()

# part NAME LIMIT_S COMMAND...: run under min(LIMIT_S, what the deadline leaves), log, record
part() {
    local name="$1" limit="$2"; shift 2
    case "$name" in install | environment) ;;  # always: the others need them
        *) [ -n "$only" ] && [[ ",$only," != *",$name,"* ]] && return ;;
    esac
    local left=$((deadline - $(date +%s) - 20))  # 20 s kept for packing
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        parts+=("$name|skipped|0|deadline")
        echo "=== $name: skipped, deadline" | tee -a "$log"
        return
    fi
    echo "=== $name (limit ${limit} s): $*" | tee -a "$log"
    local t0 rc
    t0=$(date +%s)
    timeout -k 15 "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    parts+=("$name|$rc|$(($(date +%s) - t0))|limit $limit s")
    echo "=== $name: exit $rc after $(($(date +%s) - t0)) s" | tee -a "$log"
}

# Functions run under timeout through bash -c (exported below).
lipbench() { python3 -m harness.cli.main "$@"; }

install() {
    # The carried wheels (benchmarks/gpu/fetch_wheels.sh), then lipbench itself, without
    # dependencies, into $work/site (new at every call: a warm machine's older copy is never
    # used); here (no .whl) the environment already has them.
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$work/site" .whl/*.whl || return
        python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade \
            --target "$work/site" "$root" || return
    fi
    PYTHONPATH="$work/site:$PYTHONPATH" python3 -c \
        "import harness, cleanfid, jsonschema; print('harness from', harness.__file__)"
}

environment() {
    { nvidia-smi || true
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    python3 - <<'PY'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU", p.name, f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs",
          "capability", f"{p.major}.{p.minor}")
else:
    print("no CUDA device")
PY
    } 2>&1 | tee "$work/environment.txt"
}

export root work
export -f lipbench install environment
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
part install 90 install
[ -d "$work/site" ] && export PYTHONPATH="$work/site:$PYTHONPATH"
part environment 30 environment

# The tests that exercise CUDA (tests/test_cuda.py; the others grep finds for torch.cuda.is_available).
part cuda_tests 90 python3 -m pytest -q -p no:cacheprovider -o addopts="-ra" \
    tests/test_cuda.py tests/test_methods_spectral.py tests/test_metrics_timing.py

if [ "$tiny" = 1 ]; then
    tt=(--preset ci --methods none,sn_w --set repeats=1 --set warmup=0)
    ac=(--methods none,sn_w --rounds 1 --warmup 0 --batch 2 --no-compile)
    cl=(--methods none,sn_w --seeds 0 --set iterations=10 --set warmup=2 --set trace_points=2)
else
    tt=(--preset full)
    ac=(--rounds 20 --warmup 3 --compile-budget 100)
    cl=(--preset ci --workers 8)
fi
part training_time 180 lipbench run training_time --device "$device" --out "$work/training_time" "${tt[@]}"
part amp_compile 200 python3 benchmarks/gpu/amp_compile.py --device "$device" --out "$work/amp_compile" "${ac[@]}"
part claims 150 lipbench run claims --device "$device" --out "$work/claims" "${cl[@]}"

# One archive of every results folder and the log (artifacts over 1 MiB left out), and the summary.
{
    echo "lipbench GPU run: device $device, tiny $tiny, commit ${SOURCE_COMMIT:-unknown}, $(date -u +%FT%TZ)"
    python3 benchmarks/gpu/summary.py "$work/training_time" 2>&1
    [ -f "$work/amp_compile/amp_compile.md" ] && cat "$work/amp_compile/amp_compile.md"
    echo
    echo "| part | exit | seconds | |"
    echo "| --- | --- | --- | --- |"
    for p in "${parts[@]}"; do echo "| ${p//|/ | } |"; done
    echo "total $(($(date +%s) - start)) s"
} > "$work/summary.txt"
cp "$work/summary.txt" "$OUT/summary.txt"
tar -czf "$OUT/gpu-results.tar.gz" -C "$work" --exclude=./site --exclude='*.pt' \
    $(cd "$work" && find . -path ./site -prune -o -type f -size +1M -printf '--exclude=./%P ') .
ls -l "$OUT"
echo "results: $OUT/gpu-results.tar.gz (work folder $work)"
cat "$work/summary.txt"
