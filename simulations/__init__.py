"""sddpm.simulations: denoising steps on Lava's CPU backend and the fixed-point emulation.

Above the export, below the energy model: it runs what ``sddpm.export`` built and hands
the spikes up; what they cost is priced by ``sddpm.hardware``, passed in from the top.
"""
