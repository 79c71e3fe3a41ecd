"""The model FLOP count of a train step (the 6 N convention plus attention), used by
`train_throughput.py` and `profile_train_step.py`.

    n, n_cond, flops_per_token = model_flops_per_token(params, num_layers, seq_len, d_model)
"""

from __future__ import annotations

import re

import jax
import numpy as np

from discrete_diffusion import sharding

_EMBEDDINGS = re.compile(r"(^|/)(token_embed|noise_embed|label_embed)/embedding$")
# Conditioning path: applied to the [B, 1, C] conditioning vector, once per sequence.
_PER_SEQUENCE = re.compile(r"(^|/)(adaln|time_embed|latent_embed)/")


def model_flops_per_token(params, num_layers: int, seq_len: int,
                          d_model: int) -> tuple[int, int, float]:
    """(N, N_cond, FLOPs per token): the matmul parameters applied to every token, those of the
    conditioning path applied once per sequence, and 6 N + 6 N_cond / L + 12 n_layers L d."""
    n = n_cond = 0
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        name = sharding.path_str(path)
        if x.ndim >= 2 and not _EMBEDDINGS.search(name):
            if _PER_SEQUENCE.search(name):
                n_cond += int(np.prod(x.shape))
            else:
                n += int(np.prod(x.shape))
    flops = 6.0 * n + 6.0 * n_cond / seq_len + 12.0 * num_layers * seq_len * d_model
    return n, n_cond, flops
