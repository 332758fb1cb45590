"""The errors kiosk shows to people: one line, no traceback. Everything else is a bug."""


class KioskError(Exception):
    """An error with a message meant for the operator; the CLI prints it and exits 2."""

    exit_code = 2


class ConfigError(KioskError):
    """A configuration file is missing, unreadable or invalid. `problems` lists each one."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class DataFileError(KioskError):
    """A data file (trust list, revocation list, key) could not be loaded; says which and why."""
