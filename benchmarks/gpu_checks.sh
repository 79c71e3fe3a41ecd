#!/usr/bin/env bash
# The accelerator checks in one run on a single GPU (fits one 10-minute call):
#   1. MFU of the 12-layer d = 768 model (configs/owt_absorbing.py, V = 50257) in bf16 at
#      L = 1024 over a batch sweep ($BATCHES), cudnn attention against ours (blockwise),
#      alternating steps in one process (benchmarks/train_throughput.py; with the roofline);
#   2. a jax.profiler trace of the train step summarised into the top ops by time
#      (benchmarks/profile_train_step.py; the trace comes back as $OUT/trace.tgz);
#   2b. dropout's mask drawn by jax.random.bernoulli against the written-out Threefry of
#      models/dropout.py (benchmarks/dropout_bits.py), at the 12-layer model's activations;
#   3. first-hitting against ancestral sampling at L = 1024, V = 32768 and V = 50257
#      (benchmarks/sampling_speed.py);
#   4. a converted released checkpoint ($CHECKPOINT, kind $CHECKPOINT_KIND, default mdlm)
#      sampling 1024 tokens (benchmarks/converted_sample.py), where discrete_diffusion/interop
#      exists and the file was carried; skipped with a message otherwise;
#   5. optionally ($TRAIN_CONFIGS, default none) short trainings whose workdirs come back as
#      tarballs.
#
#     bash benchmarks/gpu_checks.sh --prepare_wheels   # here, once: the wheels the GPU image lacks
#     OUT=/some/dir bash benchmarks/gpu_checks.sh      # on the GPU machine (carry .gpu_wheels)
#     OUT=/tmp/gc bash benchmarks/gpu_checks.sh --dry_run   # every stage at toy sizes on the CPU
#
# The GPU image has jax, flax, optax and orbax but not ml-collections, grain, clu (imported by
# the library) nor their deps array-record and portpicker: --prepare_wheels downloads them for
# Python 3.12 into $WHEELS (default .gpu_wheels, ignored by git; carry it), and the run installs
# them with pip --no-index into a folder on PYTHONPATH when they do not import.
#
# Each stage has its own time limit and a failed stage does not stop the others; everything is
# logged to $OUT/gpu_checks.log. --dry_run runs the same stages on the CPU at toy sizes (1 layer,
# d = 64, L = 64, batches 2 and 4, attention default and blockwise, V = 512 and 1024, the interop
# test fixture as the checkpoint), to test the script before the device time is spent.
set -u
DRY=0
PREP=0
for arg in "$@"; do
  case "$arg" in
    --dry_run) DRY=1 ;;
    --prepare_wheels) PREP=1 ;;
    *) echo "gpu_checks.sh: unknown argument '$arg' (allowed: --dry_run, --prepare_wheels)" >&2; exit 2 ;;
  esac
done
WHEELS=${WHEELS:-.gpu_wheels}
py=${PYTHON:-python3}

if [ "$PREP" = 1 ]; then
  mkdir -p "$WHEELS"
  $py -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d "$WHEELS" \
    ml-collections==1.1.0 grain==0.2.18 clu==0.0.12 array-record==0.8.6 portpicker
  ls -la "$WHEELS"
  exit $?
fi

OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
LOG="$OUT/gpu_checks.log"
: >"$LOG"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

if ! $py -c "import ml_collections, grain, clu" 2>/dev/null; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    DEPS=/tmp/gpu_checks_deps
    $py -m pip install --quiet --no-index --no-deps --target "$DEPS" "$WHEELS"/*.whl
    export PYTHONPATH="$DEPS:${PYTHONPATH:-}"
  else
    echo "ml_collections/grain/clu do not import and $WHEELS holds no wheels: run" \
      "'bash benchmarks/gpu_checks.sh --prepare_wheels' where pip can download, and carry $WHEELS" | tee -a "$LOG"
  fi
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"

if [ "$DRY" = 1 ]; then
  export JAX_PLATFORMS=cpu
  MODEL="--config.model.num_layers=1 --config.model.d_model=64 --config.model.num_heads=2 --config.data.seq_len=64"
  BATCHES=${BATCHES:-"2 4"}
  ATTN=${ATTN:-default,blockwise}
  PROFILE_ATTN=default
  RATES="--matmul_size=256 --stream_mb=32"
  SEQ=64
  VOCABS=${VOCABS:-"512 1024"}
  SAMPLER_MODEL="--d_model 32 --layers 1"
  DROPOUT_SHAPE=4,64,64
  CHECKPOINT=${CHECKPOINT:-tests/fixtures/reference/masked.safetensors}
  CHECKPOINT_ARGS=${CHECKPOINT_ARGS:-"--time_conditioning=true"}
  SCALE=2  # CPU time limits: twice the GPU's
else
  MODEL="--config.data.seq_len=1024"
  BATCHES=${BATCHES:-"16 64"}
  ATTN=${ATTN:-cudnn,blockwise}
  PROFILE_ATTN=cudnn
  RATES="--matmul_size=4096,8192 --stream_mb=2048"
  SEQ=1024
  VOCABS=${VOCABS:-"32768 50257"}
  SAMPLER_MODEL=""
  DROPOUT_SHAPE=64,1024,768
  CHECKPOINT=${CHECKPOINT:-}
  CHECKPOINT_ARGS=${CHECKPOINT_ARGS:-}
  SCALE=1
fi
CHECKPOINT_KIND=${CHECKPOINT_KIND:-mdlm}

stage() {  # stage LIMIT_SECONDS NAME COMMAND...
  local limit=$(($1 * SCALE)) name=$2; shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout -s TERM -k 20 "$limit" "$@" 2>&1 | grep -v -E "^\s*$|UserWarning|warnings.warn" | tee -a "$LOG"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}

stage 30 env bash -c "nvidia-smi -L 2>/dev/null || echo 'no nvidia-smi'; grep -m1 'model name' /proc/cpuinfo; uptime; $py -c 'import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())'"

# 1. MFU over the batch sweep, cudnn against ours, alternating in one process.
for b in $BATCHES; do
  stage 130 "throughput_bf16_batch$b" $py benchmarks/train_throughput.py \
    --config=configs/owt_absorbing.py --random_tokens=50257 --dtype=bfloat16 \
    --attention="$ATTN" --config.training.batch_size="$b" --steps=5 --warmup=2 $RATES $MODEL
done

# 2. The profile of the largest batch's step, top ops by time.
last_batch=${BATCHES##* }
stage 90 profile_bf16 $py benchmarks/profile_train_step.py --config=configs/owt_absorbing.py \
  --random_tokens=50257 --dtype=bfloat16 --attention=$PROFILE_ATTN \
  --config.training.batch_size="$last_batch" --steps=3 --top=25 --trace_dir=/tmp/gpu_checks_trace $MODEL
tar -C /tmp -czf "$OUT/trace.tgz" gpu_checks_trace 2>/dev/null && ls -la "$OUT/trace.tgz" | tee -a "$LOG"

# 2b. Dropout's mask: jax's Threefry kernel against the written-out hash fused into the mask.
stage 45 dropout_bits $py benchmarks/dropout_bits.py --shape "$DROPOUT_SHAPE" --runs 21

# 3. First-hitting against ancestral sampling.
for v in $VOCABS; do
  stage 75 "sampling_L${SEQ}_V$v" $py benchmarks/sampling_speed.py --seq_len "$SEQ" --vocab "$v" \
    --rows ancestral first_hitting $SAMPLER_MODEL
done

# 4. A converted released checkpoint sampling 1024 tokens (64 in the dry run).
if ! $py -c "import discrete_diffusion.interop" 2>/dev/null; then
  echo "=== converted_sample: skipped (discrete_diffusion.interop does not import)" | tee -a "$LOG"
elif [ -z "$CHECKPOINT" ] || [ ! -e "$CHECKPOINT" ]; then
  echo "=== converted_sample: skipped (set CHECKPOINT to a carried released checkpoint;" \
    "CHECKPOINT='$CHECKPOINT')" | tee -a "$LOG"
else
  stage 60 converted_sample $py benchmarks/converted_sample.py --source="$CHECKPOINT" \
    --kind="$CHECKPOINT_KIND" --seq_len="$SEQ" $CHECKPOINT_ARGS
fi

# 5. Optional: the training system end to end on the GPU (short runs, workdirs as tarballs).
for name in ${TRAIN_CONFIGS:-}; do
  stage ${TRAIN_LIMIT:-100} "train_$name" $py -m discrete_diffusion.main --config=configs/$name.py \
    --workdir="/tmp/runs/$name" --config.training.num_steps=100000 \
    --config.training.max_train_minutes=${TRAIN_MINUTES:-1.3} --config.training.eval_every=2000 \
    --config.training.sample_every=0 --config.training.checkpoint_every=2000
  tar -C /tmp/runs -czf "$OUT/$name.tgz" "$name" && ls -la "$OUT/$name.tgz" | tee -a "$LOG"
done
echo "=== done; log $LOG" | tee -a "$LOG"
