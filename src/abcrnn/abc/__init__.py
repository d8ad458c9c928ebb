"""ABC notation: splitting text into tunes, parsing, checking and MIDI conversion.

Nothing in this package imports PyTorch.
"""
