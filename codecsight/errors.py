"""Typed errors. Each says what went wrong with which input, so a service can report it and keep running."""


class CodecSightError(Exception):
    """Base of every error CodecSight raises on purpose."""


class SourceError(CodecSightError):
    """A source cannot be opened or read at all (missing, unreachable, empty, not a video)."""


class UnsupportedCodecError(SourceError):
    """The stream's codec is not one CodecSight reads signals from (H.264 and HEVC are)."""


class StreamTimeout(SourceError):
    """A network or pipe source stopped delivering data for longer than the read timeout."""


class ConfigError(CodecSightError, ValueError):
    """A parameter is out of its sane range."""
