"""Names of the telephony domain shared by the core, the database and the API.

String enums, so they are stored and serialised as their value.
"""

from __future__ import annotations

from enum import StrEnum


class NumberKind(StrEnum):
    VOICE = "voice"  # monthly rent, takes calls
    SMS_ONCE = "sms-once"  # one SMS for one registration; takes no calls, never lent


class NumberState(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DISCONNECTED = "disconnected"
    TESTING = "testing"  # lent for the one-hour free test


class ForwardingMode(StrEnum):
    SIMULTANEOUS = "simultaneous"
    SEQUENTIAL = "sequential"


class DestinationType(StrEnum):
    SIP_ACCOUNT = "sip_account"  # the customer's SIP account with us (our pjsip endpoint)
    SIP_URI = "sip_uri"  # sip:user@host[:port] at another provider
    IP = "ip"  # the customer's own server: sip:number@1.2.3.4[:port]
    PSTN = "pstn"  # E.164 via the carrier trunk, billed per minute


class MediaKind(StrEnum):
    GREETING = "greeting"
    VOICEMAIL_GREETING = "voicemail_greeting"


class LedgerKind(StrEnum):
    TOP_UP = "top_up"
    SETUP_FEE = "setup_fee"
    MONTHLY_FEE = "monthly_fee"
    CALL_CHARGE = "call_charge"  # per-minute PSTN forwarding / outbound
    REFUND = "refund"
    DISCOUNT = "discount"
    ADJUSTMENT = "adjustment"


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Disposition(StrEnum):
    """How a call ended, from the caller's side."""

    ANSWERED = "answered"  # bridged to a destination
    VOICEMAIL = "voicemail"  # a message was left (or voicemail answered)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"  # every leg failed / unreachable
    REJECTED = "rejected"  # refused before forwarding (unknown, suspended, no credit...)
    ABANDONED = "abandoned"  # the caller hung up before anyone answered


class LegOutcome(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"  # unreachable, rejected, congestion
    CANCELLED = "cancelled"  # answered elsewhere / caller gone
    SKIPPED = "skipped"  # not dialled (e.g. PSTN with no credit)
