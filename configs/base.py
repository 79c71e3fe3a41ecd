"""Shared defaults for every experiment config (`configs/<experiment>.py` import and override).

Usage: `python -m discrete_diffusion.main --config=configs/shakespeare_absorbing.py --workdir=/tmp/run`
with overrides such as `--config.training.num_steps=10`.
"""

from __future__ import annotations

import ml_collections

ph = ml_collections.config_dict.placeholder
HELDOUT_PLAYS = ("macbeth", "the-tempest")  # discrete_diffusion.data.shakespeare.DEFAULT_HELDOUT_PLAYS


def data_config() -> ml_collections.ConfigDict:
    """`config.data` with every field at its default (the same as the library's
    `discrete_diffusion.data.default_data_config()`; a test keeps the two equal). Configs import
    nothing from the library, so reading a config never loads jax."""
    return ml_collections.ConfigDict({
        "name": "shakespeare",  # 'shakespeare' | 'synthetic' | 'local' | 'lm1b' | 'openwebtext' | ...
        # 'files' | 'tfds' (lm1b/openwebtext from a TFDS ArrayRecord data source in data_dir)
        "source": "files",
        "tfds_name": ph(str),  # None: data.name
        "tfds_train_split": "train",
        "tfds_eval_split": "test",
        "tokenizer": ph(str),
        "vocab_size": 4096,
        "seq_len": ph(int),
        "packing": "pack",
        "add_bos_eos": ph(bool),
        "data_dir": ph(str),
        "cache_dir": "~/.cache/discrete_diffusion",
        "text_field": "text",
        "eval_fraction": 0.05,
        "on_bad_document": "error",  # 'error' | 'skip' (undecodable or oversized documents)
        "on_empty_document": "skip",  # 'skip' | 'error'
        "max_document_bytes": 1 << 30,
        "heldout_plays": HELDOUT_PLAYS,
        "seed": 0,
        "eval_batch_size": ph(int),
        "eval_max_batches": ph(int),
        "eval_pad_last": True,
        "num_threads": 4,
        "prefetch": 8,
        "synthetic_vocab_size": 32,
        "synthetic_support": 4,
        "synthetic_concentration": 0.5,
        "num_train_sequences": 100_000,
        "num_eval_sequences": 10_000,
        "pair_hash_vocab_size": 16,
        "pair_hash_direction": "forward",
        "num_states": ph(int),
    })


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # The method (discrete_diffusion/methods/): 'diffusion' | 'autoregressive' | 'module:Factory'.
    # Unset: 'autoregressive' when config.model.name == 'ar', else 'diffusion'.
    config.method = ml_collections.ConfigDict()
    config.method.name = ph(str)

    config.process = ml_collections.ConfigDict()
    config.process.name = "masked"  # 'masked' | 'uniform'
    config.process.schedule = "loglinear"  # 'linear' | 'loglinear' | 'cosine' | 'poly'
    config.process.schedule_eps = 1e-3
    config.process.schedule_power = 2.0
    config.process.num_classes = ph(int)  # from the data

    config.model = ml_collections.ConfigDict()
    config.model.name = "dit"
    config.model.size = "tiny"  # 'tiny' | 'small' | 'medium' | 'custom'
    config.model.num_layers = ph(int)
    config.model.d_model = ph(int)
    config.model.num_heads = ph(int)
    config.model.cond_dim = ph(int)
    config.model.parameterization = "denoiser"  # 'denoiser' | 'loo' | 'score'
    config.model.time_conditioning = True
    config.model.dropout = 0.1
    config.model.dtype = "float32"  # 'float32' | 'bfloat16'
    config.model.remat = False
    # > 0: output projection and loss in chunks of this many positions, rematerialised (no whole
    # [B, L, K] logits or gradient; methods/diffusion.py); 0: the whole logits at once
    config.model.logits_chunk = 0
    # None (XLA) | 'xla' | 'cudnn' (GPU flash attention) | 'blockwise' (pure-JAX online softmax,
    # no [B, H, L, L] probabilities kept for the backward; models/attention.py)
    config.model.attention_impl = ph(str)
    config.model.attention_block = 512  # attention_impl='blockwise': queries/keys per block
    config.model.noise_input = False  # True for process 'uniform_absorbing' (the network sees u)
    config.model.num_labels = 0  # > 0: class-conditional (label inputs)
    # 'rotary' (relative positions only) | 'rotary+learned' (also a learned absolute position
    # table [seq_len, d_model] added to the input embedding; models/transformer.py)
    config.model.pos_embedding = "rotary"

    config.training = ml_collections.ConfigDict()
    config.training.loss = "elbo"  # 'elbo' | 'denoising_ce' | 'loo_ce' | 'score_entropy'
    config.training.batch_size = 64  # global batch
    config.training.num_steps = 1000
    config.training.learning_rate = 3e-4
    config.training.lr_schedule = "constant"  # 'constant' | 'cosine' (both after linear warmup)
    config.training.warmup_steps = 100
    config.training.weight_decay = 0.0
    config.training.adam_b1 = 0.9
    config.training.adam_b2 = 0.999
    config.training.clip_norm = 1.0
    config.training.ema_decay = 0.9999  # 0 disables EMA (ema_params = params)
    config.training.grad_accum_steps = 1
    config.training.t_min = 1e-3
    config.training.label_dropout = 0.1  # class-conditional models: P(label -> null label) (CFG)
    config.training.kl_warmup_steps = 0  # vadd: KL weight 0 -> 1 linearly over this many steps
    config.training.kl_free_bits = 0.0  # vadd: free bits, nats per latent dim and sequence (0: off)
    config.training.seed = 0
    config.training.log_every = 50
    config.training.eval_every = 500
    config.training.eval_batches = 8
    config.training.eval_num_t = 8  # stratified times per held-out sequence (NELBO and its SE)
    config.training.sample_every = 1000
    config.training.num_samples = 4
    config.training.checkpoint_every = 1000
    config.training.max_checkpoints = 2
    config.training.max_train_minutes = 0.0  # > 0: stop (eval, samples, checkpoint) after this long
    # A step with a non-finite loss or gradient norm leaves the parameters unchanged; this many in
    # a row stop the run (exit status 3, naming the step and the last good checkpoint).
    config.training.max_nonfinite_steps = 3
    # How the step keeps the old state: 'select' (jnp.where: the whole new state is scratch until
    # the flag is known) or 'cond' (the update is written only once the flag is known: 4 x the
    # parameter bytes less scratch, the update computed twice, a longer compile); training/trainer.py.
    config.training.nonfinite_skip = "select"
    # On start, unreadable checkpoints are set aside (checkpoints/corrupt/<step>-<reason>) and the
    # newest readable one restored; if none is readable the run stops (exit status 4) unless True.
    config.training.start_fresh_if_unreadable = False

    config.data = data_config()

    config.sampler = ml_collections.ConfigDict()
    config.sampler.name = "ancestral"
    config.sampler.num_steps = 128
    config.sampler.temperature = 1.0
    config.sampler.top_k = 0
    config.sampler.top_p = 1.0

    # Evaluation of samples (--mode=eval and discrete_diffusion/evaluation/frontier.py): the
    # judge of generative perplexity ('auto': the true generator for synthetic data, SmolLM2-135M
    # for text, none for images; or 'smollm2' | 'exact' | 'none' | 'ar:WORKDIR', an in-project
    # autoregressive model), and the frontier sweep (see evaluation/frontier.py for the grid).
    config.eval = ml_collections.ConfigDict()
    config.eval.judge = "auto"
    config.eval.num_samples = 32
    config.eval.seed = 0
    config.eval.frontier = False  # True: --mode=eval also sweeps the frontier (minutes to hours)
    config.eval.samplers = "auto"  # or comma-separated presets: 'ancestral,psi,first_hitting'
    config.eval.steps = (16, 32, 64, 128)
    config.eval.temperatures = (0.7, 0.8, 0.9, 1.0)
    config.eval.top_ps = (0.8, 0.9, 0.95, 1.0)
    config.eval.categoricals = ("exact",)  # add 'float32' for the float-precision ablation
    config.eval.iwae_samples = 0  # vadd: > 0: held-out bound importance-weighted with this many z

    # Device mesh (discrete_diffusion/sharding.py): data x fsdp x tensor must equal the number of
    # devices; -1 = the rest of them (at most one field). data: batch split, parameters replicated;
    # fsdp: batch split and parameters/optimizer state sharded; tensor: heads and MLP split.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1
    config.mesh.fsdp = 1
    config.mesh.tensor = 1
    return config
