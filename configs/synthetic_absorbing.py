"""Masked diffusion on the synthetic Markov chain (known entropy rate); seconds on CPU."""

from configs import base


def get_config():
    config = base.get_config()
    config.data.name = "synthetic"
    config.data.seq_len = 32
    config.data.num_train_sequences = 20_000
    config.data.num_eval_sequences = 1_000
    config.process.name = "masked"
    config.process.schedule = "linear"
    config.model.size = "custom"
    config.model.num_layers = 2
    config.model.d_model = 64
    config.model.num_heads = 4
    config.model.cond_dim = 32
    config.model.time_conditioning = False
    config.model.dropout = 0.0
    config.training.batch_size = 64
    config.training.num_steps = 2000
    config.training.learning_rate = 1e-3
    config.training.warmup_steps = 50
    config.training.ema_decay = 0.99  # short run: a 0.999 EMA still lags the weights at step 1000
    config.training.log_every = 100
    config.training.eval_every = 500
    config.training.eval_batches = 4
    config.training.sample_every = 2000
    config.training.checkpoint_every = 1000
    config.sampler.num_steps = 32
    return config
