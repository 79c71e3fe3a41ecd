"""The `vadd` method: masked diffusion with a latent variable and a recognition model (VADD).

Reference: Xie et al., "Variational Autoencoding Discrete Diffusion with Enhanced Dimensional
Correlations Modeling" (ICLR 2026; digest: shared/papers/fhs_order_vadd_sedd.md section 3). The
reference code could not be read; the equations below follow the paper as the digest restates
them, and every choice made here is marked "(choice)".

The model. A masked process (config.process.name 'masked', any schedule alpha_t) and a
denoiser mu_theta(x_t, z, t) that also reads a Gaussian latent z in R^Z (config.model.latent_dim
= Z > 0; models/transformer.py: z enters every block's adaLN beside the time embedding):

    p_theta(x_s | x_t) = int prod_i p_theta(x_s^i | x_t, z) N(z; 0, I) dz,
    p_theta(x_s^i | x_t, z) = MDLM's reverse kernel with the clean-token law mu_theta^i(x_t, z, t),

so positions unmasked in one step are coupled through z while each conditional stays parallel.

The recognition model r_phi(z | x_0, M_t) = N(m_phi, diag s_phi^2) (models/recognition.py, the
method's params['encoder']): a transformer over x_0 whose adaLN acts only at the masked
positions M_t of x_t; z = m + s * eps, eps ~ N(0, I) (reparameterised). It takes the denoiser's
config.model.pos_embedding (with 'rotary+learned' both networks have a learned absolute table).

The double ELBO (DELBO). With w(t) = -alpha'_t / (1 - alpha_t) (1/t for the linear schedule),
the MDM NELBO of the marginal model is int w(t) E_q(x_t|x_0) [-log p_theta(x_0 | x_t)] dt with
p_theta(x_0 | x_t) = int prod_{i: x_t^i = m} mu_theta^i(x_t, z, t)[x_0^i] N(z; 0, I) dz, and the
VAE bound applied inside it gives, per (t, x_t),

    -log p_theta(x_0 | x_t) <= E_r [ sum_{i masked} -log mu_theta^i(x_t, z, t)[x_0^i] ]
                               + KL(r_phi(. | x_0, M_t) || N(0, I)),                     (1)
    DELBO(x_0) = int_0^1 w(t) E_q [ E_r[CE(z)] + KL ] dt  >=  NELBO(x_0) >= -log p_theta(x_0),

with equality in (1) iff r is the exact posterior p_theta(z | x_0, x_t). KL is closed-form,
KL(N(m, s^2) || N(0, I)) = 1/2 sum_j (m_j^2 + s_j^2 - 1 - log s_j^2).

Training (`loss`): t stratified over the batch on [t_min, 1] (as the 'diffusion' method), one
z ~ r per sequence (one eps per (t, x_t)), and the KL weight annealed,

    loss = (1 / (B L)) sum_b [ sum_i w(t_b) 1[x_t^bi = m] (-log mu(x_0^bi | x_t^b, z_b))
                                + lambda(step) w(t_b) KL_fb,b ],
    lambda(step) = min(1, step / config.training.kl_warmup_steps)   (1 when kl_warmup_steps = 0),
    KL_fb = sum_j max(config.training.kl_free_bits, KL_j)            (`free_bits_kl`; = KL at 0),

(choices: lambda linear in optimizer steps, from 0 at step 0, the paper anneals linearly "over the
first epochs/iterations"; free bits, not in the paper, in nats per latent dimension and
sequence, clamped before the weight w(t)). aux['nelbo'] is the DELBO (lambda = 1, no free bits)
per token: the masked terms at their positions plus w(t) KL spread evenly over the real tokens of
the sequence (choice: the trainer reads per-token sums, and only the sequence sum is
meaningful). aux['metrics']: 'delbo_ce' and 'delbo_kl' (nats per real token, the two terms of the
DELBO), 'kl_weight' (lambda) and 'kl_active_dims' (latent dimensions whose batch-mean KL_j
exceeds 0.01 nats: 0 means a collapsed latent).

Which bound (held-out evaluation: `eval_bounds`, reported by the trainer as eval_<name>_bpt with
standard errors, in the training-time eval log and `--mode=eval`'s summary.json). All are
estimated with `eval_num_t` stratified times per sequence on [t_min, 1]; "continuous-time"
means the sampler's limit of many steps.

    eval_nelbo = eval_marginal_nelbo   (3) below: -log p(x_0) of the per_step sampler (a fresh z
        per step) in continuous time. The number to compare with MDLM's eval_nelbo.
    eval_trajectory_nelbo              (4) below: -log p(x_0) of the per_trajectory sampler
        (one z per sample) in continuous time.
    eval_delbo                         the DELBO, the paper's objective (1 latent per time).
    eval_iw_delbo                      its importance-weighted version (2) with S =
        config.eval.iwae_samples > 1 latents, as the paper reports (S = 1000 there).

The DELBO and IW-DELBO bound the joint "marginal NELBO" J(x_0) = int w E_q[-log p_theta(x_0 |
x_t)] dt, which is *not* -log of any normalised law: for an exact latent model of a law p with
dependent positions E_p[J] < H(p) (test; L = 2, linear schedule: J = H/2 + (H(X_1|X_2) +
H(X_2|X_1))/2, the checkerboard 2.946 nats/token against its entropy 3.119), whereas every upper
bound U(x_0) >= -log q(x_0) of a normalised q has E_p[U] >= H(p) (Gibbs). The DELBO >= J and
the IW-DELBO -> J as S grows (the trained checkerboard model's IW-16 bound read 2.96 < 3.119), so
neither comes with a guarantee for the per_step or the per_trajectory sampler (nor for the latent
model E_z of fixed-z MDMs, the per_trajectory one); the DELBO's integrand at t = 1 alone bounds the
one-step sampler, -log p(x_0 | all masked). Report the DELBO to compare with the paper, and (3) /
(4) as likelihoods.

(3) the per_step sampler. In continuous time the reverse process unmasks one token at a time with
a fresh z, so its NELBO is MDLM's with the z-marginal denoiser mu-bar^i = E_N(0, I) mu^i(x_t, z):

    NELBO_step(x_0) = int_0^1 w(t) E_q [ sum_{i: x_t^i = m} -log mu-bar^i(x_t)[x_0^i] ] dt,      (3)

each mu-bar^i importance-sampled with S = max(config.eval.iwae_samples, 1) latents, half from r
and half from N(0, I) (`marginal_terms`): E[-log of the estimate] >= -log mu-bar, so (3) stays
an upper bound in expectation, tight as S grows.

(4) the per_trajectory sampler, p(x_0) = E_N(z) p_z(x_0), p_z the MDM with the denoiser mu(., z,
.) and -log p_z <= NELBO_z (MDLM's bound). Jensen with any r_1(z | x_0) gives

    NELBO_traj(x_0) = E_{r_1}[ int_0^1 w(t) E_q sum_{i: x_t^i = m} -log mu^i(x_t, z, t)[x_0^i] dt ]
                      + KL(r_1 || N(0, I))  >=  -log p(x_0),                                 (4)

with r_1 = r_phi(z | x_0, all masked) (choice: the recognition model at t = 1, the only input it
was trained on that reads x_0 alone); one z per time (`trajectory_terms`). Unlike the DELBO the
KL enters once per sequence, not weighted by w(t).

Few-step samplers (1, 4, 16 steps) are bounded by none of these: MDLM's discrete-time ELBO is not
computed here (for one step it is -log p(x_0 | all masked), which the DELBO integrand at t = 1
bounds).

Estimators (`nelbo_samples`, `eval_bounds`): `delbo_samples` the DELBO at `eval_num_t`
stratified times (one z per time); `iwae_samples` the importance-weighted bound (Burda et al.
2016) in place of (1):

    -log p_theta(x_0 | x_t) <= -log (1/S) sum_s p_theta(x_0 | x_t, z_s) N(z_s; 0, I) / r(z_s),
    z_s ~ r iid,                                                                          (2)

whose expectation decreases in S to -log p_theta(x_0 | x_t) (S = 1 is (1) in expectation);
`marginal_nelbo_samples` (3) (also `nelbo_samples`, the held-out eval_nelbo);
`trajectory_nelbo_samples` (4).

Sampling (`generate`): any masked sampler of `sampling` (config.sampler.name: 'ancestral',
'first_hitting', ...; prompting works unchanged) on the decoder with a latent chosen by
config.sampler.latent:

    'per_step'        a fresh z ~ N(0, I) for every network call at a new time (the paper's
                      Algorithm 2). The sampler sees a model function of (x_t, t); z is drawn
                      from (the generate key, the sample index, the sampler's step index) where
                      the sampler passes one (psi: its 'remdm_loop' hold repeats t, and every step
                      must still draw its own z), else from the bits of t, so each step of each
                      sample gets its own z, and two calls at the same time share it (choice:
                      this keeps the sampling/ package unaware of z). The ancestral sampler's
                      output reuse is turned off (a reused output would reuse the last step's z).
    'per_trajectory'  one z ~ N(0, I) per sample for the whole trajectory (VADD-CS).

The recognition model is not used at sampling time.

"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from discrete_diffusion import losses, processes, sampling
from discrete_diffusion import models as models_lib
from discrete_diffusion.log_prob import log_softmax_at
from discrete_diffusion.methods import chunked, stratified
from discrete_diffusion.methods.base import (
    Batch,
    MethodBase,
    Params,
    compiled_sampler,
    token_weights,
    with_sampler,
)
from discrete_diffusion.models.recognition import RecognitionTransformer

Array = jax.Array
LATENT_MODES = ("per_step", "per_trajectory")
LOG_2PI = math.log(2.0 * math.pi)


# ---- the math, as pure functions (tests/test_methods_vadd.py checks them by quadrature) ----------
def gaussian_kl_dims(mean: Array, logvar: Array) -> Array:
    """KL_j = 1/2 (m_j^2 + s_j^2 - 1 - log s_j^2) `[..., Z]`, per latent dimension j."""
    return 0.5 * (mean**2 + jnp.exp(logvar) - 1.0 - logvar)


def gaussian_kl(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, diag exp(logvar)) || N(0, I)) = sum_j KL_j `[...]` over the last axis."""
    return jnp.sum(gaussian_kl_dims(mean, logvar), axis=-1)


def free_bits_kl(mean: Array, logvar: Array, free_bits: float) -> Array:
    """The free-bits KL term (Kingma et al. 2016, per latent dimension and per sequence):

        KL_fb = sum_j max(lambda_fb, KL_j)   `[...]`,   lambda_fb = free_bits (nats per dim),

    equal to the KL when every KL_j >= lambda_fb; a dimension below lambda_fb costs the constant
    lambda_fb and gets no gradient, so the encoder may use it up to lambda_fb nats for free (the
    cure for a collapsed latent, KL ~ 0, whose KL gradient otherwise pins r to N(0, I)). (choice:
    the clamp per sequence and dimension; Kingma et al. clamp the minibatch average of a group.)"""
    return jnp.sum(jnp.maximum(free_bits, gaussian_kl_dims(mean, logvar)), axis=-1)


def log_normal(z: Array, mean: Array | float = 0.0, logvar: Array | float = 0.0) -> Array:
    """log N(z; mean, diag exp(logvar)) `[...]` summed over the last axis."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar), axis=-1)


def reparameterize(mean: Array, logvar: Array, eps: Array) -> Array:
    """z = mean + exp(logvar / 2) * eps."""
    return mean + jnp.exp(0.5 * logvar) * eps


def mixture_log_weights(z: Array, mean: Array, logvar: Array, num_r: int) -> Array:
    """log N(z_s; 0, I) - log q(z_s) `[S, B]` for z `[S, B, Z]` whose first `num_r` rows are drawn
    from r = N(mean, diag exp(logvar)) and the other S - num_r from N(0, I): the deterministic
    mixture ("balance heuristic", Veach & Guibas 1995; defensive importance sampling, Hesterberg
    1995) q = (num_r / S) r + (1 - num_r / S) N(0, I). (1/S) sum_s f(z_s) N(z_s)/q(z_s) is unbiased
    for E_N(0, I)[f] and, with rows from both, each weight is at most S / (S - num_r)."""
    S = z.shape[0]
    log_prior = log_normal(z)
    log_r = log_normal(z, mean, logvar)
    if num_r >= S:
        return log_prior - log_r
    log_q = jnp.logaddexp(math.log(num_r / S) + log_r, math.log(1.0 - num_r / S) + log_prior)
    return log_prior - log_q


def masked_log_likelihood(logits: Array, x0: Array, x_t: Array, mask_id: int,
                          weights: Array | None = None) -> Array:
    """log p_theta(x_0 | x_t, z) = sum_{i: x_t^i = m} w_i log softmax(logits)_i[x_0^i] `[B]`."""
    logp = log_softmax_at(logits, x0)
    w = jnp.ones(x0.shape, jnp.float32) if weights is None else weights
    return jnp.sum(jnp.where(x_t == mask_id, logp, 0.0) * w, axis=-1)


def iwae_log_marginal(log_lik: Array, z: Array, mean: Array, logvar: Array) -> Array:
    """(2): log (1/S) sum_s exp(log_lik_s + log N(z_s; 0, I) - log r(z_s)) `[B]`, from log_lik
    `[S, B]` and z `[S, B, Z]` drawn from r = N(mean, diag exp(logvar)) (`[B, Z]` each)."""
    log_w = log_lik + log_normal(z) - log_normal(z, mean, logvar)
    return jax.nn.logsumexp(log_w, axis=0) - jnp.log(log_lik.shape[0])


def kl_weight(step: Array | int | None, warmup_steps: int) -> Array:
    """lambda(step) = min(1, step / warmup_steps); 1 if warmup_steps = 0 or step is None."""
    if warmup_steps <= 0 or step is None:
        return jnp.ones((), jnp.float32)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def step_latents(key: Array, t: Array, latent_dim: int, step: Array | None = None) -> Array:
    """z `[N, Z]` ~ N(0, I), a function of (key, sample index n, the sampler's step index) when
    the sampler passes `step` (`sampling.psi.step_inputs`), else of (key, n, the float32 bits of
    t_n): a fresh latent for every sample and every sampler step (`per_step`, module doc). The
    step index matters where a sampler repeats t (the hold of psi's 'remdm_loop': with the bits of
    t, 20 steps drew 10 distinct z)."""
    t = jnp.asarray(t, jnp.float32)
    if t.ndim == 2:  # per-position times (prompted positions at 0): the sequence's time is the max
        t = jnp.max(t, axis=-1)
    index = (jax.lax.bitcast_convert_type(t, jnp.uint32) if step is None
             else jnp.broadcast_to(jnp.asarray(step, jnp.uint32), t.shape))

    def one(n: Array, b: Array) -> Array:
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, n), b), (latent_dim,))

    return jax.vmap(one)(jnp.arange(t.shape[0]), index)


class VADD(MethodBase):
    """Masked diffusion with a latent-conditioned denoiser and a recognition model (module doc)."""

    name = "vadd"
    samples_with_config_sampler = True
    # The encoder's own parameters (its blocks, embedding and norms follow sharding.RULES).
    partition_rules = (
        (r"^encoder/mask_repr$", P()),
        (r"^encoder/mask_embed/fc\d/(kernel|bias)$", P()),
        (r"^encoder/head/(kernel|bias)$", P()),
    )
    # encoder_layers None: the denoiser's num_layers; latent_dim has no default (validate_config).
    # 'sampler' holds the fields this method reads itself (`sampler_fields`, derived: validation
    # leaves them out of the `sampling` package's fields).
    config_declared = {"method": {"encoder_layers": (int, None)}, "model": {"latent_dim": (int, None)},
                       "sampler": {"latent": (str, LATENT_MODES[0])}}

    def __init__(self, config: Any, num_classes: int):
        self.validate_config(config)
        self.config = config
        self.proc = processes.from_config(config.process)
        self.num_classes = num_classes
        self.t_min = float(config.training.get("t_min", 1e-3))
        self.kl_warmup_steps = int(config.training.get("kl_warmup_steps", 0))
        self.kl_free_bits = float(config.training.get("kl_free_bits", 0.0))
        ev = config.get("eval", None)
        self.num_iwae = int(ev.get("iwae_samples", 0)) if ev is not None else 0
        self.model = models_lib.get_model(config, num_classes, self.proc.num_states)
        self.logits_chunk = chunked.logits_chunk(config)  # training CE in chunks (c > 0)
        self.latent_dim = self.model.latent_dim
        m = self.model
        layers = config.method.get("encoder_layers", None)
        self.encoder = RecognitionTransformer(
            num_classes=num_classes, latent_dim=self.latent_dim,
            num_layers=m.num_layers if layers is None else int(layers), d_model=m.d_model,
            num_heads=m.num_heads, cond_dim=m.cond_dim, mlp_ratio=m.mlp_ratio, dropout=m.dropout,
            attention_impl=m.attention_impl, attention_block=m.attention_block,
            pos_embedding=m.pos_embedding, max_len=m.max_len,
            dtype=m.dtype, param_dtype=m.param_dtype)

    @staticmethod
    def validate_config(config: Any) -> None:
        """The fields VADD needs (errors name the field and the allowed values)."""
        if config.process.get("name", None) != "masked":
            raise ValueError(f"config.process.name={config.process.get('name', None)!r} is not one "
                             "of ['masked'] for config.method.name='vadd'")
        if config.model.get("parameterization", "denoiser") != "denoiser":
            raise ValueError(f"config.model.parameterization={config.model.parameterization!r} is "
                             "not one of ['denoiser'] for config.method.name='vadd'")
        z = config.model.get("latent_dim", 0)
        if isinstance(z, bool) or not isinstance(z, int) or z < 1:
            raise ValueError(f"config.model.latent_dim={z!r} must be an int >= 1 for "
                             "config.method.name='vadd'")
        if int(config.model.get("num_labels", 0)) != 0:
            raise ValueError("config.model.num_labels must be 0 for config.method.name='vadd'")
        layers = config.method.get("encoder_layers", None)
        if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int)
                                   or layers < 1):
            raise ValueError(f"config.method.encoder_layers={layers!r} must be None (the "
                             "denoiser's num_layers) or an int >= 1")
        mode = config.sampler.get("latent", "per_step")
        if mode not in LATENT_MODES:
            raise ValueError(f"config.sampler.latent={mode!r} is not one of {list(LATENT_MODES)}")
        fb = config.training.get("kl_free_bits", 0.0)
        if isinstance(fb, bool) or not isinstance(fb, int | float) or not fb >= 0.0:
            raise ValueError(f"config.training.kl_free_bits={fb!r} must be a number >= 0 (nats "
                             "per latent dimension and sequence; 0 = the plain KL)")

    # -- parameters
    def init(self, key: Array, example_batch: Batch) -> Params:
        seq_len = example_batch["tokens"].shape[-1]
        k_net, k_enc = jax.random.split(key)
        inputs = models_lib.example_inputs(self.model, 1, seq_len)
        x0 = jnp.zeros((1, seq_len), jnp.int32)
        return {"network": self.model.init({"params": k_net}, **inputs)["params"],
                "encoder": self.encoder.init({"params": k_enc}, x0, x0 == 0)["params"]}

    # -- the two networks
    def decoder_logits(self, params: Params, x_t: Array, t: Array, z: Array, *,
                       train: bool = False, key: Array | None = None,
                       output_positions: Array | None = None) -> Array:
        """Logits `[B, L, K]` of mu_theta(x_t, z, t); `[B, P, K]` at `output_positions` `[B, P]`
        only (the samplers' few-position calls, `sampling.context.Context.network_at`)."""
        rngs = {"dropout": key} if key is not None else {}
        at = {} if output_positions is None else {"output_positions": output_positions}
        return self.model.apply({"params": params["network"]}, x_t, t, train=train, rngs=rngs,
                                latent=z, **at)

    def encode(self, params: Params, x0: Array, x_t: Array, *, train: bool = False,
               key: Array | None = None) -> tuple[Array, Array]:
        """(mean, logvar) `[B, Z]` of r_phi(z | x_0, M_t), M_t = 1[x_t = m]."""
        rngs = {"dropout": key} if key is not None else {}
        return self.encoder.apply({"params": params["encoder"]}, x0, x_t == self.proc.mask_id,
                                  train=train, rngs=rngs)

    def nelbo_weight(self, t: Array) -> Array:
        """w(t) = -alpha'_t / (1 - alpha_t) `[B]`, the weight of both terms of (1)."""
        return -self.proc.dalpha(t) / jnp.maximum(1.0 - self.proc.alpha(t), processes.TINY)

    def _delbo_parts(self, params: Params, x0: Array, x_t: Array, t: Array, eps: Array, *,
                     train: bool = False, key: Array | None = None
                     ) -> tuple[Array, Array, Array]:
        """(ce `[B, L]`, mean, logvar `[B, Z]`) of `delbo_terms`, r's parameters unreduced."""
        k_enc, k_dec = jax.random.split(key) if key is not None else (None, None)
        mean, logvar = self.encode(params, x0, x_t, train=train, key=k_enc)
        z = reparameterize(mean, logvar, eps)
        if self.logits_chunk > 0:  # no [B, L, K] logits whole (methods/chunked.py)
            rngs = {"dropout": k_dec} if k_dec is not None else {}
            h = self.model.apply({"params": params["network"]}, x_t, t, train=train, rngs=rngs,
                                 latent=z, return_hidden=True)  # [B, L, D]

            def chunk(shared: tuple, h_c: Array, x0_c: Array, x_t_c: Array) -> Array:
                out_params, t = shared
                logits = self.model.project_hidden(out_params, h_c)  # [B, c, K]
                return losses.masked_nelbo(self.proc, logits, x0_c, x_t_c, t[:, None])

            out_params = chunked.head_params(params)
            ce = chunked.position_chunks(chunk, self.logits_chunk, (out_params, t), h, x0, x_t)
            return ce, mean, logvar
        logits = self.decoder_logits(params, x_t, t, z, train=train, key=k_dec)
        return losses.masked_nelbo(self.proc, logits, x0, x_t, t[:, None]), mean, logvar

    def delbo_terms(self, params: Params, x0: Array, x_t: Array, t: Array, eps: Array, *,
                    train: bool = False, key: Array | None = None) -> tuple[Array, Array]:
        """The two terms of the DELBO integrand at (t, x_t) with z = m + s eps:
        ce `[B, L]` = w(t) 1[x_t = m] (-log mu(x_0 | x_t, z)) and kl `[B]` = w(t) KL(r || N(0, I))."""
        ce, mean, logvar = self._delbo_parts(params, x0, x_t, t, eps, train=train, key=key)
        return ce, self.nelbo_weight(t) * gaussian_kl(mean, logvar)

    def iwae_terms(self, params: Params, x0: Array, x_t: Array, t: Array, eps: Array,
                   weights: Array | None = None) -> Array:
        """w(t) times the bound (2) of -log p(x_0 | x_t) `[B]`, from eps `[S, B, Z]`."""
        mean, logvar = self.encode(params, x0, x_t)
        z = jax.vmap(reparameterize, in_axes=(None, None, 0))(mean, logvar, eps)  # [S, B, Z]

        def log_lik(z_s: Array) -> Array:
            logits = self.decoder_logits(params, x_t, t, z_s)
            return masked_log_likelihood(logits, x0, x_t, self.proc.mask_id, weights)

        ll = jax.lax.map(log_lik, z)  # [S, B]
        return -self.nelbo_weight(t) * iwae_log_marginal(ll, z, mean, logvar)

    def marginal_terms(self, params: Params, x0: Array, x_t: Array, t: Array,
                       eps: Array) -> Array:
        """(3) per token `[B, L]`: w(t) 1[x_t^i = m] (-log mu-bar^i(x_t)[x_0^i]), mu-bar the
        z-marginal denoiser, each position's mu-bar^i = E_N(0, I)[mu^i(x_t, z)] by importance
        sampling with S latents (eps `[S, B, Z]`): the first ceil(S/2) z_s = m + s eps_s ~ r, the
        rest z_s = eps_s ~ N(0, I), weighted by N(z_s) / q(z_s), q their mixture
        (`mixture_log_weights`; choice: r targets the joint posterior of all masked positions,
        narrower than each position's, so weights N / r alone can have infinite variance; with the
        prior in the mixture they are at most 2). An upper bound in expectation per position
        (Jensen), tight as S grows."""
        mean, logvar = self.encode(params, x0, x_t)
        S = eps.shape[0]
        num_r = (S + 1) // 2
        z_r = jax.vmap(reparameterize, in_axes=(None, None, 0))(mean, logvar, eps[:num_r])
        z = jnp.concatenate([z_r, eps[num_r:]], axis=0)  # [S, B, Z]

        def log_mu(z_s: Array) -> Array:
            logp = jax.nn.log_softmax(self.decoder_logits(params, x_t, t, z_s), -1)
            return jnp.take_along_axis(logp, x0[..., None], -1)[..., 0]  # [B, L]

        lp = jax.lax.map(log_mu, z)  # [S, B, L]
        log_w = mixture_log_weights(z, mean, logvar, num_r)  # [S, B]
        log_bar = jax.nn.logsumexp(lp + log_w[..., None], axis=0) - jnp.log(S)
        return jnp.where(x_t == self.proc.mask_id, -self.nelbo_weight(t)[:, None] * log_bar, 0.0)

    def trajectory_terms(self, params: Params, x0: Array, x_t: Array, t: Array,
                         eps: Array) -> tuple[Array, Array]:
        """(4)'s integrand `[B, L]` and its KL `[B]` at (t, x_t): z = m_1 + s_1 eps ~ r_1 =
        r(z | x_0, all masked), ce = w(t) 1[x_t = m] (-log mu(x_0 | x_t, z)), kl = KL(r_1 || N(0, I))
        (unweighted: it enters (4) once per sequence)."""
        mean, logvar = self.encode(params, x0, jnp.full_like(x0, self.proc.mask_id))
        z = reparameterize(mean, logvar, eps)
        logits = self.decoder_logits(params, x_t, t, z)
        return losses.masked_nelbo(self.proc, logits, x0, x_t, t[:, None]), gaussian_kl(mean, logvar)

    # -- training
    def prepare(self, batch: Batch, key: Array) -> Batch:
        """Adds t `[B]` (stratified over the batch), x_t `[B, L]` and eps `[B, Z]` (z's noise)."""
        k_t, k_noise, k_eps = jax.random.split(key, 3)
        B = batch["tokens"].shape[0]
        t = stratified.batch_times(k_t, B, self.t_min)
        x_t, _ = self.proc.corrupt(k_noise, batch["tokens"], t[:, None])
        eps = jax.random.normal(k_eps, (B, self.latent_dim))
        return {**batch, "t": t, "x_t": x_t, "eps": eps}

    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool = True,
             step: Array | None = None) -> tuple[Array, dict]:
        if "x_t" not in batch:
            batch = self.prepare(batch, key)
        k_loss = jax.random.fold_in(key, 7)
        ce, mean, logvar = self._delbo_parts(params, batch["tokens"], batch["x_t"], batch["t"],
                                             batch["eps"], train=train,
                                             key=k_loss if train else None)
        w = token_weights(batch)
        B, L = batch["tokens"].shape
        lam = kl_weight(step, self.kl_warmup_steps)
        ce_seq = jnp.sum(ce * w, axis=-1)  # [B]
        n_tok = jnp.sum(w, axis=-1)  # [B]
        wt = self.nelbo_weight(batch["t"])
        kl = wt * gaussian_kl(mean, logvar)  # [B]: the DELBO's KL term
        kl_obj = kl if self.kl_free_bits <= 0.0 else wt * free_bits_kl(mean, logvar,
                                                                       self.kl_free_bits)
        loss = jnp.sum(ce_seq + lam * kl_obj) / (B * L)
        nelbo = ce * w + (kl / jnp.maximum(n_tok, 1.0))[:, None] * w
        total = jnp.maximum(jnp.sum(n_tok), 1.0)
        kl_dims = jnp.mean(gaussian_kl_dims(mean, logvar), axis=0)  # [Z], unweighted, batch mean
        metrics = {"delbo_ce": jnp.sum(ce_seq) / total, "delbo_kl": jnp.sum(kl) / total,
                   "kl_weight": lam, "kl_active_dims": jnp.sum(kl_dims > 0.01).astype(jnp.float32)}
        return loss, {"nelbo": nelbo, "weights": w, "metrics": metrics}

    # -- evaluation
    def delbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int) -> Array:
        """[B, num_t] per-sequence DELBO (nats) at stratified times, one z ~ r per time."""
        w = token_weights(batch)

        def nelbo_fn(k: Array, x0: Array, t: Array) -> Array:
            k_noise, k_eps = jax.random.split(k)
            x_t, _ = self.proc.corrupt(k_noise, x0, t[:, None])
            eps = jax.random.normal(k_eps, (x0.shape[0], self.latent_dim))
            ce, kl = self.delbo_terms(params, x0, x_t, t, eps)
            n_tok = jnp.maximum(jnp.sum(w, axis=-1), 1.0)
            return ce + (kl / n_tok)[:, None]

        return stratified.nelbo_samples(key, nelbo_fn, batch["tokens"], num_t, self.t_min,
                                        weights=w)

    def iwae_samples(self, params: Params, batch: Batch, key: Array, num_t: int,
                     num_samples: int) -> Array:
        """[B, num_t] per-sequence importance-weighted bound (2) with `num_samples` z per time."""
        w = token_weights(batch)

        def nelbo_fn(k: Array, x0: Array, t: Array) -> Array:
            k_noise, k_eps = jax.random.split(k)
            x_t, _ = self.proc.corrupt(k_noise, x0, t[:, None])
            eps = jax.random.normal(k_eps, (num_samples, x0.shape[0], self.latent_dim))
            bound = self.iwae_terms(params, x0, x_t, t, eps, weights=w)  # [B]
            return (bound / jnp.maximum(jnp.sum(w, axis=-1), 1.0))[:, None] * jnp.ones_like(w)

        return stratified.nelbo_samples(key, nelbo_fn, batch["tokens"], num_t, self.t_min,
                                        weights=w)

    def marginal_nelbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int,
                               num_samples: int) -> Array:
        """[B, num_t] per-sequence (3), the NELBO of the continuous-time sampler, with
        `num_samples` latents per time: a bound on -log p(x_0) that the DELBO is not (module doc)."""

        def nelbo_fn(k: Array, x0: Array, t: Array) -> Array:
            k_noise, k_eps = jax.random.split(k)
            x_t, _ = self.proc.corrupt(k_noise, x0, t[:, None])
            eps = jax.random.normal(k_eps, (num_samples, x0.shape[0], self.latent_dim))
            return self.marginal_terms(params, x0, x_t, t, eps)

        return stratified.nelbo_samples(key, nelbo_fn, batch["tokens"], num_t, self.t_min,
                                        weights=token_weights(batch))

    def trajectory_nelbo_samples(self, params: Params, batch: Batch, key: Array,
                                 num_t: int) -> Array:
        """[B, num_t] per-sequence (4), the bound of the per_trajectory sampler: at each time one
        z ~ r(z | x_0, all masked) and KL(r_1 || N(0, I)) added whole to every time's sample (so
        each sample is an unbiased estimate of (4))."""
        w = token_weights(batch)

        def nelbo_fn(k: Array, x0: Array, t: Array) -> Array:
            k_noise, k_eps = jax.random.split(k)
            x_t, _ = self.proc.corrupt(k_noise, x0, t[:, None])
            eps = jax.random.normal(k_eps, (x0.shape[0], self.latent_dim))
            ce, kl = self.trajectory_terms(params, x0, x_t, t, eps)
            return ce + (kl / jnp.maximum(jnp.sum(w, axis=-1), 1.0))[:, None]

        return stratified.nelbo_samples(key, nelbo_fn, batch["tokens"], num_t, self.t_min,
                                        weights=w)

    @property
    def num_latents(self) -> int:
        """Latents per (t, x_t) of the importance-sampled held-out bounds: config.eval.iwae_samples,
        at least 1."""
        return max(self.num_iwae, 1)

    def nelbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int) -> Array:
        """The held-out eval_nelbo: (3), the NELBO of the per_step sampler (comparable with
        MDLM's), with `num_latents` latents per time."""
        return self.marginal_nelbo_samples(params, batch, key, num_t, self.num_latents)

    def eval_bounds(self, params: Params, batch: Batch, key: Array,
                    num_t: int) -> dict[str, Array]:
        """Every held-out bound, each `[B, num_t]` nats per sequence (module doc, "Which bound"):
        'nelbo' = 'marginal_nelbo' (3) (per_step sampler), 'trajectory_nelbo' (4)
        (per_trajectory sampler), 'delbo' (the paper's training objective) and, with
        config.eval.iwae_samples = S > 1, 'iw_delbo' (2) with S latents; independent keys."""
        k_m, k_tr, k_d, k_iw = jax.random.split(key, 4)
        marginal = self.marginal_nelbo_samples(params, batch, k_m, num_t, self.num_latents)
        out = {"nelbo": marginal, "marginal_nelbo": marginal,
               "trajectory_nelbo": self.trajectory_nelbo_samples(params, batch, k_tr, num_t),
               "delbo": self.delbo_samples(params, batch, k_d, num_t)}
        if self.num_iwae > 1:
            out["iw_delbo"] = self.iwae_samples(params, batch, k_iw, num_t, self.num_iwae)
        return out

    # -- sampling
    def generate(self, params: Params, key: Array, num_samples: int, seq_len: int,
                 sampler_config: Any = None, **prompt: Array) -> sampling.SampleResult:
        """Samples with `config.sampler` (or `sampler_config`) and its `latent` mode (module doc)."""
        config = with_sampler(self.config, sampler_config).copy_and_resolve_references()
        mode = config.sampler.get("latent", "per_step")
        if mode not in LATENT_MODES:
            raise ValueError(f"config.sampler.latent={mode!r} is not one of {list(LATENT_MODES)}")
        with config.unlocked():
            if "latent" in config.sampler:
                del config.sampler["latent"]
            if mode == "per_step" and config.sampler.get("name", "ancestral") == "ancestral":
                config.sampler.reuse_output = False

        def network(params: Params, key: Array) -> tuple[Callable, Array]:
            k_z, k_run = jax.random.split(key)
            if mode == "per_trajectory":
                z = jax.random.normal(k_z, (num_samples, self.latent_dim))

                def model_fn(x_t: Array, t: Array, output_positions: Array | None = None) -> Array:
                    return self.decoder_logits(params, x_t, t, z, output_positions=output_positions)
            else:
                def model_fn(x_t: Array, t: Array, output_positions: Array | None = None,
                             step: Array | None = None) -> Array:
                    return self.decoder_logits(params, x_t, t,
                                               step_latents(k_z, t, self.latent_dim, step),
                                               output_positions=output_positions)
            return model_fn, k_run

        if prompt:  # prompts are checked on their concrete values: the functional path
            model_fn, k_run = network(params, key)
            return sampling.generate(k_run, model_fn, config, num_samples, seq_len, **prompt)
        # one compiled sampler per (sampler section, N, L): the parameters are an argument
        fn = compiled_sampler(self, config, num_samples, seq_len, network, variant=mode)
        tokens, nfe = fn(params, key)
        return sampling.SampleResult(tokens=tokens, nfe=int(nfe))
