"""Exceptions whose message is meant for the person running abcrnn."""


class AbcrnnError(Exception):
    """Invalid input or a failed step; the message names the value and the fix.

    The command line prints the message without a traceback and exits with status 2.
    Library code raises subclasses of the built-in types where one fits (see below).
    """


class CorpusError(AbcrnnError, ValueError):
    """A corpus source is missing, unreadable, empty or too short."""


class VocabularyError(AbcrnnError, ValueError):
    """Text contains characters that are not in the vocabulary."""


class CheckpointError(AbcrnnError):
    """A checkpoint is missing, corrupt, foreign or does not fit the request."""


class ConfigError(AbcrnnError, ValueError):
    """A setting is out of range or settings contradict each other."""


class RenderError(AbcrnnError):
    """A converter (abc2midi or a synthesizer) is missing or failed."""


class TrainingError(AbcrnnError):
    """Training cannot go on, e.g. the loss became NaN or infinite."""
