"""The samplers by name: ours, and the diffusers schedulers we configure (no imports).

The command line lists these names in its help without loading torch or diffusers;
:mod:`sddpm.diffusers_samplers` builds and runs the schedulers.
"""

OWN_SAMPLERS = ("ddpm", "ddim")

# name -> (diffusers class, its options beyond our schedule, does it draw noise per step)
SCHEDULERS = {
    # diffusers' own DDPM and DDIM: the independent check of ours (tests/test_samplers.py)
    "diffusers-ddpm": ("DDPMScheduler", {"variance_type": "fixed_large", "clip_sample": False}),
    "diffusers-ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True,
                                         "steps_offset": 0, "timestep_spacing": "leading"}),
    # DPM-Solver++(2M), Lu et al. 2022: multistep, one network call per step
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                     "solver_order": 2}),
    "dpm-solver++-3m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                        "solver_order": 3}),
    # the SDE variant: fresh noise at every step, drawn from our generator
    "dpm-solver++-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                         "solver_order": 2}),
    # UniPC (Zhao et al. 2023), B(h) = e^h - 1 ("bh2"), predictor-corrector on x_0
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2",
                                          "predict_x0": True}),
    "deis": ("DEISMultistepScheduler", {"solver_order": 2}),
    # Karras et al. 2022's Heun: second order, two network calls per step but the last
    "heun": ("HeunDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "euler": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
}

DEFAULT_STEPS = {"diffusers-ddpm": 1000}


def default_steps(name: str) -> int:
    """Steps when none are given: all of DDPM's, else DDIM's default of 50."""
    return DEFAULT_STEPS.get(name, 50)
