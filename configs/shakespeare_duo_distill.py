"""Duo's discrete consistency distillation (DCD) of a trained shakespeare_duo model; CPU minutes.

    python -m discrete_diffusion.main --config=configs/shakespeare_duo_distill.py \\
        --workdir=runs/shk_duo_distill --config.method.teacher_workdir=runs/shk_duo

config.method.name='duo_distill' (discrete_diffusion/methods/duo_distill.py): the student and the
frozen teacher start from the EMA network of the run at teacher_workdir (a shakespeare_duo run:
same model, process and parameterization); the student at (z_t, t) is pulled towards the teacher
at (z_s, s = t - delta) on the same deterministic Gaussian trajectory, KL(student || teacher);
rounds of `round_steps` steps, delta doubling from delta_init, the teacher refreshed from the
student at each round boundary. The paper distils 5 rounds x 10k steps from delta 1/512 at
lr 6e-5 (warmup 500, EMA 0.999) so delta ends at 16/512; here 5 rounds x 100 steps from 1/64 to
16/64 = 1/4, on the order of one step of an 8-step sampler, at lr 3e-4, so the run (500 steps)
takes a few CPU minutes. Samples: the student with the uniform ancestral sampler at 8 steps.
"""

import ml_collections

from configs import base, shakespeare_duo


def get_config():
    config = shakespeare_duo.get_config()
    config.method = ml_collections.ConfigDict()  # none of duo's curriculum fields
    config.method.name = "duo_distill"
    config.method.teacher_workdir = base.ph(str)  # required: --config.method.teacher_workdir=WORKDIR
    config.method.teacher_params = "ema"  # the network the teacher run samples with
    config.method.round_steps = 100
    config.method.delta_init = 1.0 / 64
    config.method.gamma_min = base.ph(float)  # None: the alpha range of Duo's [-4, -1] at K = 50257
    config.method.gamma_max = base.ph(float)
    config.training.num_steps = 500
    config.training.max_train_minutes = 8.0
    config.training.learning_rate = 3e-4
    config.training.warmup_steps = 50
    config.training.ema_decay = 0.99
    config.training.eval_every = 500
    config.training.checkpoint_every = 100
    config.training.sample_every = 500
    config.sampler.num_steps = 8
    return config
