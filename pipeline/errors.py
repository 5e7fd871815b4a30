"""Errors the CLI turns into one clear line and an exit code (2 usage/config, 1 runtime)."""


class EdgewatchError(Exception):
    exit_code = 1


class UsageError(EdgewatchError):
    """Bad arguments or configuration: exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    pass


class SourceError(EdgewatchError):
    """A source that cannot be opened or read (missing file, not a video, absent camera)."""

    exit_code = 1


class OutputError(EdgewatchError):
    """The output folder cannot be created or written."""

    exit_code = 1
