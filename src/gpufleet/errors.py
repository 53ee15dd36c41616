"""Errors a user sees as one clear line (see cli.py), never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment: the message names the problem and what to do."""
