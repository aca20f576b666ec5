"""sddpm: spiking denoising diffusion models, from training to neuromorphic deployment.

One package from the repository's folders (see README, Layout): the model side lives
directly in ``sddpm`` (neurons, the Spiking U-Net and its ANN twin, diffusion, data,
training, sampling, checkpoints, evaluation) and knows nothing of NIR or Lava; the
later stages are ``sddpm.export`` (NIR, Lava bundles), ``sddpm.simulations`` (Lava
runs), ``sddpm.hardware`` (spike profiles, energy) and ``sddpm.cli`` on top. Each imports
only the ones before it (import-linter's contract in ``pyproject.toml``).
"""

__version__ = "0.1.0"
