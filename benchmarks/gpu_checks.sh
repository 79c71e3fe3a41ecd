#!/usr/bin/env bash
# The accelerator checks in one run (a single GPU): sampler speed at L = 1024, V = 32k,
# train-step throughput and MFU of the small model at L = 1024 in bf16, and two short
# Shakespeare trainings whose workdirs come back as tarballs (for evaluation on a CPU machine).
#
#     OUT=/some/dir bash benchmarks/gpu_checks.sh
#
# Each stage has its own time limit and a failed stage does not stop the others; everything is
# logged to $OUT/gpu_checks.log. Training stops by SIGTERM at its limit, which saves a checkpoint.
set -u
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
LOG="$OUT/gpu_checks.log"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}

stage() {  # stage LIMIT_SECONDS NAME COMMAND...
  local limit=$1 name=$2; shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout -s TERM -k 20 "$limit" "$@" 2>&1 | grep -v -E "^\s*$|UserWarning|warnings.warn" | tee -a "$LOG"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}

stage 30 env bash -c "nvidia-smi -L; $py -c 'import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())'"
stage 150 sampling_speed $py benchmarks/sampling_speed.py --seq_len 1024 --vocab 32768
for impl in default xla cudnn; do
  stage 90 "throughput_small_L1024_bf16_$impl" $py benchmarks/train_throughput.py \
    --config=configs/owt_absorbing.py --random_tokens=50257 --dtype=bfloat16 \
    --attention=$impl --config.training.batch_size=64 --steps=10 --warmup=2
done
# The training system end to end on the GPU (through the methods seam): a short Shakespeare run.
for name in ${TRAIN_CONFIGS:-shakespeare_absorbing}; do
  stage ${TRAIN_LIMIT:-100} "train_$name" $py -m discrete_diffusion.main --config=configs/$name.py \
    --workdir="/tmp/runs/$name" --config.training.num_steps=100000 \
    --config.training.max_train_minutes=${TRAIN_MINUTES:-1.3} --config.training.eval_every=2000 \
    --config.training.sample_every=0 --config.training.checkpoint_every=2000
  tar -C /tmp/runs -czf "$OUT/$name.tgz" "$name" && ls -la "$OUT/$name.tgz" | tee -a "$LOG"
done
