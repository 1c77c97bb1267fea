"""The one exception a user can cause; the CLI prints its message without a traceback."""


class FfnkvError(Exception):
    """A mistake in user input (config, files, shapes, tokens), stated in one sentence."""


class ConfigError(FfnkvError):
    """An invalid configuration value."""
