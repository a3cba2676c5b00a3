"""One ``--help`` style for every ``gem`` command.

* ``(default: X)`` is appended to an option's help only when the help does not already talk about its default and
  the default says something (not None/False/empty): hand-written defaults ("default: the config's") are never
  contradicted or repeated.
* Descriptions are module docstrings in reStructuredText; their literal markup (````gem eval````) is dropped for
  the terminal, and their line breaks are kept (usage examples stay one per line).
"""
from __future__ import annotations

import argparse
import re

_LITERAL = re.compile(r"`{1,2}([^`]+)`{1,2}")


def plain_text(text: str) -> str:
    """``gem eval`` / `x` → gem eval / x (reStructuredText literals as plain terminal text)."""
    return _LITERAL.sub(r"\1", text)


def has_meaningful_default(action: argparse.Action) -> bool:
    """Whether ``(default: …)`` would tell the reader anything about ``action``."""
    default = action.default
    if action.nargs == 0 or default is argparse.SUPPRESS:  # flags: absent = off, nothing to say
        return False
    return default is not None and default is not False and default != [] and default != [None]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """RawDescription layout + defaults shown once, + no reStructuredText literals."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or not has_meaningful_default(action):
            return text
        return text + " (default: %(default)s)"

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))
