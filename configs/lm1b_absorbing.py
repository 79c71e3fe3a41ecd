"""MDLM on LM1B: small DiT, L=128, batch 512, lr 3e-4, warmup 2500, EMA 0.9999."""

from configs import owt_absorbing


def get_config():
    config = owt_absorbing.get_config()
    config.data.name = "lm1b"
    # the prepared ArrayRecords by default; a TFDS copy of lm1b (prepared with
    # file_format='array_record', e.g. in a bucket) instead: --config.data.source=tfds
    # --config.data.data_dir=gs://BUCKET/tensorflow_datasets
    config.data.seq_len = 128
    config.sampler.num_steps = 128
    return config
