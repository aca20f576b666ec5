"""sddpm.export: a trained Spiking U-Net as a NIR graph, its Loihi fixed point, its Lava bundle.

Above the model side, below the simulations and the energy model: of the project, it
imports the model side only.
"""
