"""The one error type users see: a mistake in their input, reported as one line, exit code 2.

Every module raises a subclass of :class:`UserError` for bad files, flags, paths,
baselines and methods; the command line prints ``lipbench: <message>`` and exits 2
(the traceback only with ``--debug``). Anything else is a bug in lipbench or in the code
under test and is reported as an internal error.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a file, line, key, flag, path or layer named in the message."""


class ResultsFolderError(UserError):
    """A results folder that lipbench may not write to, or that holds damaged records."""
