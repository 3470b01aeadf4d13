#!/usr/bin/env bash
# Every GPU check and benchmark of the performance issue in one call on a lent GPU (one
# device call is all a session can count on): the fast-path numerical checks, then the
# benchmarks, most important first. Each step has its own time limit, so a stuck or
# failing step leaves the rest their turn.
#
#   bash experiments/gpu_run.sh        # carry .whl (experiments/README.md, GPU)
#
# Output, three files (a device call returns at most 8): $OUT/log.txt (everything, with
# each step's exit status and seconds), $OUT/results.json ({step: the benchmark's JSON},
# rewritten after every step) and $OUT/m1_train_trace.json.gz (the profiled step).
# STEPS="checks profile ..." runs only the steps named; EXTRA adds flags to every
# benchmark (a CPU smoke run: EXTRA="--num_frames=4 --crop_size=32 --num_layers=1
# --runs=1").
set -u
OUT=${OUT:-/tmp/gpu_run}
JSON=/tmp/gpu_run_json
mkdir -p "$OUT" "$JSON"
LOG=$OUT/log.txt
if compgen -G '.whl/*.whl' > /dev/null; then   # ml_collections, missing on the GPU image.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
# Steps that compile the same program (e.g. Model 1 inference with and without the
# Hugging Face comparison) share it through the persistent cache.
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
K=configs/kinetics400
BENCH="python3 -m experiments.benchmark --runs=5 --dtype=bfloat16 ${EXTRA:-}"

step() {   # step SECONDS NAME COMMAND... ({json} in COMMAND = this step's JSON path)
  local limit=$1 name=$2 start=$SECONDS
  shift 2
  [[ " ${STEPS:-$name} " == *" $name "* ]] || return 0
  local command=("${@//\{json\}/$JSON/$name.json}")
  echo "=== $name ($(date +%T), limit ${limit} s): ${command[*]}" | tee -a "$LOG"
  timeout -k 5 "$limit" "${command[@]}" 2>&1 | tee -a "$LOG"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$LOG"
  python3 - "$JSON" "$OUT/results.json" << 'EOF'
import json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob('*.json'))
pathlib.Path(sys.argv[2]).write_text(json.dumps(
    {f.stem: json.loads(f.read_text()) for f in files}, indent=1))
EOF
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__,
    "optax", optax.__version__, jax.devices())'; } | tee -a "$LOG"

step 90 checks python3 -m experiments.gpu_checks
# ViViT-B Model 1 against Hugging Face's VivitModel (bf16, sdpa) on the same GPU (target
# >= 2x inference) and its training MFU (target >= 45% bf16); half the memory is left
# to PyTorch.
step 120 m1_hf env XLA_PYTHON_CLIENT_MEM_FRACTION=.5 $BENCH --batch_size=32 \
  --train_batch_size=16 --config=$K/vivit_b16x2_spatio_temporal.py --json={json}
# Where Model 1's training step spends its device time (experiments/trace_summary.py),
# and the trace itself for a closer look offline.
step 100 profile env XLA_PYTHON_CLIENT_MEM_FRACTION=.9 $BENCH --nohf --noinference --runs=2 \
  --train_batch_size=16 --config=$K/vivit_b16x2_spatio_temporal.py \
  --profile_dir=/tmp/profile --json={json}
trace=$(ls -t /tmp/profile/*/plugins/profile/*/perfetto_trace.json.gz 2> /dev/null | head -1)
[[ -n "$trace" ]] && cp "$trace" "$OUT/m1_train_trace.json.gz"
# The same step with GELU and LayerNorm differentiated by autodiff instead of their own
# backward passes (vivit_jax.ops.switches.own_backward_passes; not yet measured on a GPU):
# the profile step's numbers are the baseline.
step 90 m1_autodiff env XLA_PYTHON_CLIENT_MEM_FRACTION=.9 VIVIT_JAX_OWN_BACKWARD=0 \
  $BENCH --nohf --noinference --train_batch_size=16 \
  --config=$K/vivit_b16x2_spatio_temporal.py --json={json}
# ViViT-L/16x2 factorised encoder at 32 frames: remat makes a batch of 32 fit.
step 110 l_fe_remat env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 $BENCH --nohf --noinference \
  --remat --train_batch_size=32 --config=$K/vivit_l16x2_factorised_encoder.py --json={json}
# Model 1 training at twice the batch, all the memory to JAX.
step 110 m1 env XLA_PYTHON_CLIENT_MEM_FRACTION=.9 $BENCH --nohf --noinference \
  --train_batch_size=32 --config=$K/vivit_b16x2_spatio_temporal.py --json={json}
step 100 tsf_hf env XLA_PYTHON_CLIENT_MEM_FRACTION=.5 $BENCH --batch_size=32 \
  --train_batch_size=16 --config=$K/timesformer_divided_space_time.py --json={json}
step 80 m2 env XLA_PYTHON_CLIENT_MEM_FRACTION=.9 $BENCH --nohf --noinference \
  --train_batch_size=32 --config=$K/vivit_b16x2_factorised_encoder.py --json={json}
# Without remat the same batch should not fit (the compile or the first step fails).
step 150 l_fe env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 $BENCH --nohf --noinference \
  --noremat --train_batch_size=32 --config=$K/vivit_l16x2_factorised_encoder.py --json={json}
# The largest Model 1 training batch that fits (powers of two; three compilations).
step 200 m1_max env XLA_PYTHON_CLIENT_MEM_FRACTION=.95 $BENCH --nohf --noinference \
  --train_batch_size=0 --config=$K/vivit_b16x2_spatio_temporal.py --json={json}
# XLA GPU options against Model 1's training step at batch 16 (the profile step's
# numbers are the baseline): cuBLASLt epilogues (bias + GELU fused into the GEMM),
# cuBLAS instead of Triton GEMMs.
for flag in xla_gpu_enable_cublaslt=true xla_gpu_enable_triton_gemm=false; do
  step 90 "flag_${flag%%=*}" env XLA_PYTHON_CLIENT_MEM_FRACTION=.9 XLA_FLAGS="--$flag" \
    $BENCH --nohf --noinference --train_batch_size=16 \
    --config=$K/vivit_b16x2_spatio_temporal.py --json={json}
done
# Every paper-sized config, inference at batch 8 (the issue's "report every model").
step 400 all_inference env XLA_PYTHON_CLIENT_MEM_FRACTION=.9 $BENCH --nohf --notrain \
  --batch_size=8 --all --json={json}
echo "=== done $(date +%T)" | tee -a "$LOG"
