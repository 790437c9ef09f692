"""The FastAGI wire format, pure: no sockets, no asyncio.

Asterisk opens a TCP connection per ``AGI(agi://host:port/script,args)``, sends
a block of ``agi_<name>: <value>`` lines ended by an empty line, then waits for
commands, one line each, and answers every command with one reply line
``<code> result=<value> [(<data>)] [key=value ...]`` (a ``520-`` usage reply
spans several lines, ended by ``520 End of proper usage.``). When the channel
hangs up while the script runs, Asterisk may send a lone ``HANGUP`` line before
a reply. Rules kept here:

- a header is bounded (``MAX_HEADER_BYTES``) by the caller of ``AgiHeader.parse``
  (the reader), never trusted to end;
- values sent in commands are quoted so a space, a quote or a backslash in them
  cannot split a command into more arguments;
- a reply that is not ``200`` is an ``AgiCommandError``, not a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 8 * 1024
"""Asterisk's header for a call is well under 2 KB; anything bigger is not Asterisk."""
HANGUP_LINE = "HANGUP"

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_()]*")
_REPLY = re.compile(r"^(?P<code>\d{3}) result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?P<rest>.*)$")


class AgiProtocolError(Exception):
    """The peer broke the protocol (bad header, bad reply, too big, too slow, gone)."""


class AgiCommandError(Exception):
    """Asterisk refused a command (510 unknown, 511 dead channel, 520 usage)."""

    def __init__(self, code: int, line: str) -> None:
        super().__init__(f"AGI {code}: {line}")
        self.code = code
        self.line = line


@dataclass(frozen=True, slots=True)
class AgiHeader:
    """The ``agi_*`` variables of one request, with the script and its arguments."""

    values: dict[str, str]
    args: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, lines: list[str]) -> AgiHeader:
        values: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not name.startswith("agi_"):
                raise AgiProtocolError(f"not an AGI header line: {line[:60]!r}")
            values[name[4:]] = value.strip()
        if "request" not in values:
            raise AgiProtocolError("AGI header without agi_request")
        args = []
        index = 1
        while f"arg_{index}" in values:
            args.append(values[f"arg_{index}"])
            index += 1
        return cls(values, tuple(args))

    @property
    def script(self) -> str:
        """``inbound`` for ``agi://host:port/inbound?x=y`` (query dropped)."""
        script = self.values.get("network_script") or self.values.get("request", "")
        if "://" in script:  # agi_request is the whole URL when network_script is absent
            script = script.split("://", 1)[1].partition("/")[2]
        return script.partition("?")[0].strip("/")

    def get(self, name: str, default: str = "") -> str:
        value = self.values.get(name, default)
        return default if value == "unknown" else value

    def arg(self, index: int) -> str:
        """The ``index``-th AGI argument (1-based), '' when absent."""
        return self.args[index - 1] if 0 < index <= len(self.args) else ""


@dataclass(frozen=True, slots=True)
class AgiReply:
    code: int
    result: str
    data: str | None
    line: str

    @classmethod
    def parse(cls, line: str) -> AgiReply:
        match = _REPLY.match(line)
        if match is None:
            code = line[:3]
            if code.isdigit():
                raise AgiCommandError(int(code), line)
            raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
        reply = cls(int(match["code"]), match["result"], match["data"], line)
        if reply.code != 200:
            raise AgiCommandError(reply.code, line)
        return reply


def quote(value: str) -> str:
    """One AGI command argument, whatever it holds."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


def set_variable(name: str, value: str) -> str:
    if not _VARIABLE_NAME.fullmatch(name):
        raise ValueError(f"not a channel variable name: {name!r}")
    return f"SET VARIABLE {name} {quote(value)}"


def set_variables(variables: dict[str, str]) -> str:
    """One ``EXEC MSet`` setting every variable: one round trip for a whole plan
    (res_agi reads one command per poll of its socket, so commands cannot be
    pipelined). MSet splits on commas: a comma (or ``|``) in a value is
    backslash-escaped for it, and ``quote`` escapes that backslash for AGI."""
    return f"EXEC MSet {quote(mset_arguments(variables))}"


def mset_arguments(variables: dict[str, str]) -> str:
    """``MSet``'s argument for ``variables``, as the dialplan's own ``MSet(...)``
    takes it too (a pushed plan, ``plans.standing_plan_value``)."""
    for name in variables:
        set_variable(name, "")  # the same name check
    return ",".join(f"{name}={_mset_escaped(value)}" for name, value in variables.items())


def _mset_escaped(value: str) -> str:
    for special in ("\\", ",", "|"):
        value = value.replace(special, "\\" + special)
    return value


def database_put(family: str, key: str, value: str) -> str:
    """AstDB ``family/key`` = ``value`` (res_agi's own command: no dialplan
    function, so Asterisk's block on "dangerous" functions from ARI or AMI,
    which ``DB()`` is, does not apply)."""
    return f"DATABASE PUT {quote(family)} {quote(key)} {quote(value)}"


def database_del(family: str, key: str) -> str:
    return f"DATABASE DEL {quote(family)} {quote(key)}"


def get_variable(name: str) -> str:
    return f"GET VARIABLE {quote(name)}"


def verbose(message: str, level: int = 1) -> str:
    return f"VERBOSE {quote(message)} {level}"
