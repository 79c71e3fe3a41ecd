"""sampling.trace: any sampler records the state of every network call through its Context."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.methods import base as methods_base
from discrete_diffusion.sampling import trace

K, L, N = 4, 5, 3
TABLE = jax.random.normal(jax.random.PRNGKey(0), (K + 1, K))


def config(process, name, **fields):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser"}, "sampler": {"name": name, **fields}})


def recorded(cfg, model_fn, seed=1):
    with trace.recording() as rec:
        result = dd.generate(jax.random.PRNGKey(seed), model_fn, cfg, N, L)
    return result, rec.trajectory(result.tokens)


@pytest.mark.parametrize("process,name,fields", [
    ("masked", "ancestral", {"num_steps": 6}),  # calls the network only when a token unmasks
    ("uniform", "psi", {"num_steps": 4, "kappa": 0.5}),  # changes tokens
])
def test_one_row_per_network_call_then_the_final_tokens(process, name, fields):
    calls = []

    def model_fn(x_t, t):  # the network sees exactly the recorded states, in order
        jax.debug.callback(lambda x: calls.append(np.asarray(x).copy()), x_t, ordered=True)
        return TABLE[x_t] if process == "masked" else TABLE[:K][x_t]

    result, traj = recorded(config(process, name, **fields), model_fn)
    assert traj.states.shape == (result.nfe + 1, N, L) and traj.times.shape == (result.nfe + 1,)
    np.testing.assert_array_equal(traj.states[:-1], np.stack(calls))
    np.testing.assert_array_equal(traj.states[-1], result.tokens)
    assert np.all(np.diff(traj.times[:-1]) <= 0) and traj.times[-1] == 0.0  # time runs down
    plain = dd.generate(jax.random.PRNGKey(1), model_fn, config(process, name, **fields), N, L)
    np.testing.assert_array_equal(plain.tokens, result.tokens)  # recording changes nothing


def masked_model(x_t, t):
    return TABLE[x_t]


def test_first_hitting_reveals_one_token_per_call_and_only_a_recording_records():
    cfg = config("masked", "first_hitting")
    plain = dd.generate(jax.random.PRNGKey(1), masked_model, cfg, N, L)  # compiled and cached
    result, traj = recorded(cfg, masked_model)  # its own sampler, with the trace callback
    np.testing.assert_array_equal(traj.states[-1], result.tokens)
    np.testing.assert_array_equal(plain.tokens, result.tokens)
    masked = (traj.states == K).sum(-1)  # [S + 1, N]
    np.testing.assert_array_equal(masked, np.repeat(np.arange(L, -1, -1)[:, None], N, 1))
    for a, b in zip(traj.states[:-1], traj.states[1:], strict=True):
        assert np.all((a == K) | (a == b))  # a revealed token never changes
    with trace.recording() as rec:
        pass
    dd.generate(jax.random.PRNGKey(0), masked_model, cfg, N, L)
    assert rec.states == []  # the cached sampler carries no recorder


def test_methods_compiled_samplers_record_too():
    owner, cfg = type("Owner", (), {})(), config("masked", "first_hitting")

    def network(params, key):
        return (lambda x_t, t: params[x_t]), key

    with trace.recording() as rec:
        fn = methods_base.compiled_sampler(owner, cfg, N, L, network)
        tokens_rec, nfe = fn(TABLE, jax.random.PRNGKey(2))
    traj = rec.trajectory(tokens_rec)
    assert traj.states.shape == (int(nfe) + 1, N, L) and np.all(traj.states[0] == K)
    assert jnp.all(traj.states[-1] == tokens_rec)
    # cached apart from the plain sampler: a second recording reuses it (no new compile) and
    # gets its own trajectory; outside a recording the plain sampler is a different program
    assert [k[-1] for k in owner._samplers] == [True]
    with trace.recording() as rec2:
        again = methods_base.compiled_sampler(owner, cfg, N, L, network)
        tokens2, nfe2 = again(TABLE, jax.random.PRNGKey(3))
    assert again is fn and rec2.trajectory(tokens2).states.shape == (int(nfe2) + 1, N, L)
    assert len(rec.states) == int(nfe)  # the first recording got nothing of the second run
    plain = methods_base.compiled_sampler(owner, cfg, N, L, network)
    assert plain is not fn and sorted(k[-1] for k in owner._samplers) == [False, True]
    fn(TABLE, jax.random.PRNGKey(4))  # the recording program run with no recording open: dropped
    assert len(rec2.states) == int(nfe2)


def test_the_recorder_reports_progress_with_an_eta(capsys):
    rec = trace.Recorder(expected_calls=4, report_every_s=0.0)
    for i in range(3):  # the clock starts at the first call: lines from the second on
        rec(np.zeros((N, L), np.int32), np.array([1.0 - i / 4]))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[samples] sampling: 2/4 network calls (50%) [")
    assert lines[1].startswith("[samples] sampling: 3/4 network calls (75%) [")
    silent = trace.Recorder()  # no expected count: no line
    silent(np.zeros((N, L), np.int32), np.array([1.0]))
    assert capsys.readouterr().out == ""
