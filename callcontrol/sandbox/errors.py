"""The one error type of the sandbox: a message a person can act on."""

from __future__ import annotations


class SandboxError(Exception):
    """Building, starting or stopping the Asterisk sandbox failed; ``str()`` says why."""
