"""User-facing exceptions. The CLI prints these as one line (no traceback)."""


class GemsegError(Exception):
    """Base class of errors caused by user input (files, configs, checkpoints, arguments)."""


class ConfigError(GemsegError):
    """A config file or override is invalid (unknown key, bad value, unsafe YAML tag)."""


class CheckpointError(GemsegError):
    """A checkpoint cannot be read or does not fit the model."""
