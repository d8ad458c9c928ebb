"""abcrnn: learn folk tunes in ABC notation with a character-level LSTM."""

__version__ = "0.1.0"
