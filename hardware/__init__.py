"""sddpm.hardware: spike profiles, hardware costs and energy, for torch and for the chip.

The top stage under the command line: it prices what the model side, the export and the
simulations produce.
"""
