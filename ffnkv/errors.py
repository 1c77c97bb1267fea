"""The one exception a user can cause; the CLI prints its message without a traceback."""


class FfnkvError(Exception):
    """A mistake in user input (config, files, shapes, tokens), stated in one sentence."""


class ConfigError(FfnkvError):
    """An invalid configuration value."""


class Interrupted(FfnkvError):
    """Work stopped by SIGTERM or SIGINT after saving what resumes it; the CLI exits with ``128 + signum``
    (143 for SIGTERM, 130 for SIGINT) and prints the message as its one line."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
