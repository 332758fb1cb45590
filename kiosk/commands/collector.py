"""`kiosk collector`: not written yet."""

import argparse
from typing import Any


def register(subcommands: "argparse._SubParsersAction[Any]") -> None:
    """Adds nothing until this command exists."""
