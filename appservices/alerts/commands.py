"""Chat commands on an incident: parsing only (the effects live in :mod:`.incidents`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMANDS = ("ack", "unack", "resolve", "assign", "note", "silence", "status", "help")
ACK_REACTIONS = {"✅", "✅\ufe0f", "✔️", "✔", "👍"}

HELP_TEXT = (
    "Commands (reply to the alert or write in its thread):\n"
    "!ack (or react ✅) acknowledge · !unack withdraw the acknowledgement · !resolve close the incident\n"
    "!assign @user:server hand it to someone · !note text add a note\n"
    "!silence 2h silence it at Alertmanager (or mute it here) · !status show the incident · !help this text"
)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_MXID = re.compile(r"^@[^:\s]+:\S+$")


class CommandError(ValueError):
    """The command is malformed; the message tells the user how to write it."""


@dataclass(frozen=True)
class Command:
    """A parsed command: ``name`` from :data:`COMMANDS` and its argument string (may be empty)."""

    name: str
    arg: str = ""


def parse_command(body: str) -> Command | None:
    """Parse a message body. ``None`` if it is not a command (does not start with ``!`` + a known name).

    Reply fallbacks (lines starting with ``> ``) are skipped, so a reply to the alert works in any client.

    Raises:
        CommandError: a known command with a bad argument (e.g. ``!assign`` without a user ID).
    """
    lines = [ln for ln in body.splitlines() if not ln.startswith(">")]
    text = "\n".join(lines).strip()
    if not text.startswith("!"):
        return None
    head, _, arg = text[1:].partition(" ")
    name = head.strip().lower()
    if name not in COMMANDS:
        return None
    arg = arg.strip()
    if name == "assign":
        if not _MXID.match(arg):
            raise CommandError("usage: !assign @user:server")
    elif name == "note":
        if not arg:
            raise CommandError("usage: !note some text")
    elif name == "silence":
        parse_duration(arg or "")
    return Command(name, arg)


def parse_duration(text: str) -> int:
    """``"2h"``, ``"30m"``, ``"1d12h"``, ``"90s"`` -> seconds (int, 1 s .. 30 days).

    Raises:
        CommandError: not a duration or out of range.
    """
    m = _DURATION.match(text.strip().lower())
    if not text.strip() or not m or not any(m.groups()):
        raise CommandError("usage: !silence 2h (units d, h, m, s)")
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    seconds = d * 86400 + h * 3600 + mi * 60 + s
    if not 1 <= seconds <= 30 * 86400:
        raise CommandError("a silence lasts between 1s and 30d")
    return seconds
