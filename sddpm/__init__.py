"""sddpm: spiking denoising diffusion models, from training to neuromorphic deployment.

This package holds the model side only: neurons, the Spiking U-Net and its ANN twin,
diffusion, data, training, sampling and checkpoints. It knows nothing of NIR or Lava.
"""

__version__ = "0.1.0"
