"""The errors of the pure core.

Every error the domain raises derives from ``DomainError``. They carry a stable
machine ``code`` and a one-line human message; they know nothing of HTTP, SIP or
the database -- the edge that catches them decides what the outside world sees
(an HTTP status, a log line, a refused job).

- ``InvalidInput``: the caller passed data the rules cannot accept (a naive
  datetime, a negative fee, an unsupported prepay period ...).
- ``CurrencyMismatch``: two amounts in different currencies were combined.
- ``IllegalTransition``: a number life-cycle action is not allowed from the
  number's state (or its guard failed); the message names the from-state, the
  target state and the action.
- ``NotPermitted``: an ``IllegalTransition`` refused because of *who* asked
  (another account's reservation, a customer attempting a system action).
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Base of every error raised by ``callcontrol.domain``."""

    code: ClassVar[str] = "domain_error"


class InvalidInput(DomainError):
    """The data given cannot be accepted by the rules."""

    code: ClassVar[str] = "invalid_input"


class CurrencyMismatch(DomainError):
    """Two amounts in different currencies were added, subtracted or compared."""

    code: ClassVar[str] = "currency_mismatch"

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine amounts in {left} and {right}")
        self.left = left
        self.right = right


class IllegalTransition(DomainError):
    """A life-cycle action refused for the number's current state."""

    code: ClassVar[str] = "illegal_transition"

    def __init__(self, from_state: str, to_state: str | None, action: str, reason: str) -> None:
        target = to_state if to_state is not None else "?"
        super().__init__(f"illegal transition {from_state} -> {target} by '{action}': {reason}")
        self.from_state = from_state
        self.to_state = to_state
        self.action = action
        self.reason = reason


class NotPermitted(IllegalTransition):
    """A life-cycle action refused because of the actor, not the state."""

    code: ClassVar[str] = "not_permitted"
