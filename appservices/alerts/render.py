"""Render an incident as a Matrix ``m.room.message``: plain ``body`` plus sanitised HTML ``formatted_body``.

Text from the sources is escaped (``html.escape``) as it is placed into our markup; the finished HTML then
goes through nh3 with the Matrix HTML allowlist (Client-Server API, "m.room.message msgtypes" ->
"HTML tags permitted"), so a source can never smuggle markup or a ``javascript:`` link into a room.
Values from the sources are wrapped in Unicode bidi isolates (FSI ... PDI) so right-to-left labels do not
reorder the text around them. Content that would exceed the 65536-byte event limit is shrunk, never rejected.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import nh3

from .models import FIRING, RESOLVED, AlertGroup

#: Matrix's HTML allowlist (spec: m.room.message, "HTML tags permitted").
MATRIX_TAGS = {
    "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub", "li", "b",
    "i", "u", "strong", "em", "s", "code", "hr", "br", "div", "table", "thead", "tbody", "tr", "th", "td",
    "caption", "pre", "span", "img", "details", "summary", "font",
}
MATRIX_ATTRIBUTES = {
    "font": {"data-mx-bg-color", "data-mx-color", "color"},
    "span": {"data-mx-bg-color", "data-mx-color", "data-mx-spoiler", "data-mx-maths"},
    "a": {"target", "href"},
    "img": {"width", "height", "alt", "title", "src"},
    "ol": {"start"},
    "code": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto", "matrix"}

#: Event size limit (bytes of the whole event as canonical JSON); we budget the content below it to leave
#: room for the envelope (room_id, sender, signatures, hashes, unsigned).
EVENT_LIMIT = 65536
CONTENT_BUDGET = 60000

FSI, PDI = "\u2068", "\u2069"
SEVERITY_MARKERS = {
    "critical": "🔴", "disaster": "🔴", "high": "🔴", "page": "🔴", "error": "🔴",
    "warning": "🟠", "average": "🟠",
    "info": "🔵", "information": "🔵", "none": "⚪",
}
FOLD_CHARS = 600
FOLD_LINES = 8
MAX_ALERTS_SHOWN = 20


def sanitise_html(fragment: str) -> str:
    """Clean ``fragment`` down to the Matrix HTML allowlist with nh3 (links limited to http/https/mailto/matrix)."""
    return nh3.clean(
        fragment,
        tags=MATRIX_TAGS,
        attributes=MATRIX_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=None,
        clean_content_tags={"script", "style"},
    )


def isolate(text: str) -> str:
    """Wrap ``text`` in First-Strong-Isolate / Pop-Directional-Isolate so RTL text stays in its box."""
    return f"{FSI}{text}{PDI}"


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, int]:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes on a character boundary.

    Returns ``(text, dropped_bytes)``; a combining mark or ZWJ left dangling at the cut is dropped too.
    """
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text, 0
    cut = raw[:max_bytes].decode("utf-8", "ignore")
    # Do not end on a joiner or a combining mark: it would glue onto our truncation note.
    while cut and (cut[-1] in "\u200d\ufe0f" or 0x300 <= ord(cut[-1]) <= 0x36F):
        cut = cut[:-1]
    return cut, len(raw) - len(cut.encode("utf-8"))


def content_size(content: dict[str, Any]) -> int:
    """Bytes of ``content`` as compact UTF-8 JSON (what counts against the event size limit)."""
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@dataclass
class IncidentView:
    """What the renderer needs to know about an incident besides its alerts.

    Attributes:
        incident_id: e.g. ``"I-3f9a2c1d"``.
        state: ``firing`` / ``acknowledged`` / ``resolved``.
        route: route name.
        acknowledged_by / resolved_by / assignee: user IDs or ``None``.
        notifications: how many notifications the source has sent for this incident (1 = first).
        muted_until_ms: bridge-side mute deadline (ms since epoch) or ``None``.
        mentions: user IDs to page (``m.mentions.user_ids``) in the first message.
    """

    incident_id: str
    state: str
    route: str
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    assignee: str | None = None
    notifications: int = 1
    muted_until_ms: int | None = None
    mentions: list[str] = field(default_factory=list)


def _silence_url(group: AlertGroup, alert_links: dict[str, str]) -> str:
    if alert_links.get("silence"):
        return alert_links["silence"]
    if group.source == "alertmanager" and group.external_url:
        labels = group.group_labels or group.common_labels
        flt = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return f"{group.external_url.rstrip('/')}/#/silences/new?filter={quote(flt, safe='')}"
    return ""


def _header(group: AlertGroup, view: IncidentView) -> tuple[str, str]:
    severity = group.severity
    if view.state == RESOLVED:
        marker, status = "✅", "RESOLVED"
    elif view.state == "acknowledged":
        marker, status = "🟡", "ACKNOWLEDGED"
    else:
        marker, status = SEVERITY_MARKERS.get(severity.lower(), "🔴"), "FIRING"
    firing = sum(1 for a in group.alerts if a.status == FIRING)
    count = f" ({firing}/{len(group.alerts)} firing)" if len(group.alerts) > 1 and view.state != RESOLVED else ""
    plain = f"{marker} {status} [{severity.upper()}] {group.title}{count}"
    rich = (
        f"{marker} <strong>{status}</strong> <code>{html.escape(severity.upper())}</code> "
        f"<strong>{html.escape(isolate(group.title))}</strong>{html.escape(count)}"
    )
    return plain, rich


def _status_line(group: AlertGroup, view: IncidentView) -> str:
    parts = [f"Incident {view.incident_id}", f"route {view.route}", f"source {group.source}"]
    if view.acknowledged_by and view.state != RESOLVED:
        parts.append(f"acknowledged by {view.acknowledged_by}")
    if view.resolved_by and view.state == RESOLVED:
        parts.append(f"resolved by {view.resolved_by}")
    if view.assignee:
        parts.append(f"assigned to {view.assignee}")
    if view.notifications > 1:
        parts.append(f"{view.notifications} notifications")
    if view.muted_until_ms:
        parts.append("muted")
    return " · ".join(parts)


def render_incident(
    group: AlertGroup, view: IncidentView, max_annotation_bytes: int = 16384, max_alerts: int = MAX_ALERTS_SHOWN
) -> dict[str, Any]:
    """Build the ``m.room.message`` content (``msgtype: m.text``) for an incident.

    Args:
        group: the incident's current alerts (merged over all notifications).
        view: incident state for the header and status line.
        max_annotation_bytes: longer annotation values are truncated with a note.
        max_alerts: at most this many alerts are listed; the rest are counted.
    Returns:
        ``{"msgtype", "body", "format", "formatted_body", "m.mentions"}``.
    """
    plain_head, rich_head = _header(group, view)
    status_line = _status_line(group, view)
    plain: list[str] = [plain_head, status_line]
    rich: list[str] = [f"<p>{rich_head}</p>", f"<p><em>{html.escape(status_line)}</em></p>"]

    shown = sorted(group.alerts, key=lambda a: (a.status != FIRING, a.fingerprint))[:max_alerts]
    rich.append("<ul>")
    for alert in shown:
        summary = alert.annotations.get("summary") or alert.labels.get("alertname") or alert.fingerprint
        plain.append(f"- [{alert.status}] {summary}")
        item = [f"<li><p><strong>{html.escape(isolate(summary))}</strong> <code>{alert.status}</code></p>"]
        for key, value in alert.annotations.items():
            if key in ("summary", "runbook_url"):
                continue
            text, dropped = truncate_utf8(value, max_annotation_bytes)
            note = f" … [truncated: {dropped} more bytes, see the source]" if dropped else ""
            plain.append(f"  {key}: {text}{note}")
            escaped = html.escape(text)
            lines = text.count("\n") + 1
            if len(text) > FOLD_CHARS or lines > FOLD_LINES:
                item.append(
                    f"<details><summary>{html.escape(key)} ({lines} lines)</summary>"
                    f"<pre><code>{escaped}</code></pre>{html.escape(note)}</details>"
                )
            else:
                item.append(
                    f"<p>{html.escape(key)}: {isolate(escaped).replace(chr(10), '<br/>')}{html.escape(note)}</p>"
                )
        labels = ", ".join(f"{k}={v}" for k, v in alert.labels.items())
        plain.append(f"  labels: {labels}")
        item.append(
            "<p>"
            + " ".join(
                f"<code>{html.escape(k)}={html.escape(isolate(v))}</code>" for k, v in alert.labels.items()
            )
            + "</p>"
        )
        links = []
        if alert.generator_url:
            links.append(("Source", alert.generator_url))
        runbook = alert.annotations.get("runbook_url") or group.common_annotations.get("runbook_url")
        if runbook and runbook.lower().startswith(("http://", "https://")):
            links.append(("Runbook", runbook))
        for name in ("dashboard", "panel"):
            if alert.links.get(name):
                links.append((name.capitalize(), alert.links[name]))
        silence = _silence_url(group, alert.links)
        if silence and alert.status == FIRING:
            links.append(("Silence", silence))
        if links:
            plain.append("  " + " | ".join(f"{n}: {u}" for n, u in links))
            item.append(
                "<p>"
                + " · ".join(f'<a href="{html.escape(u, quote=True)}">{n}</a>' for n, u in links)
                + "</p>"
            )
        item.append("</li>")
        rich.append("".join(item))
    rich.append("</ul>")
    hidden = len(group.alerts) - len(shown) + group.truncated_alerts
    if hidden > 0:
        plain.append(f"… and {hidden} more alerts not shown")
        rich.append(f"<p>… and {hidden} more alerts not shown</p>")
    mentions = list(dict.fromkeys(view.mentions)) if view.state == FIRING else []
    if mentions:
        plain.append("Paging: " + " ".join(mentions))
        rich.append(
            "<p>Paging: "
            + " ".join(
                f'<a href="https://matrix.to/#/{quote(u, safe="@:")}">{html.escape(u)}</a>' for u in mentions
            )
            + "</p>"
        )
    if view.state != RESOLVED:
        hint = "Reply in the thread: !ack, !resolve, !assign @user, !note text, !silence 2h, !status, !help (or react ✅)"
        plain.append(hint)
        rich.append(f"<p><sub>{html.escape(hint)}</sub></p>")
    return {
        "msgtype": "m.text",
        "body": "\n".join(plain),
        "format": "org.matrix.custom.html",
        "formatted_body": sanitise_html("".join(rich)),
        "m.mentions": {"user_ids": mentions} if mentions else {},
    }


def render_fitted(group: AlertGroup, view: IncidentView, budget: int = CONTENT_BUDGET) -> dict[str, Any]:
    """:func:`render_incident`, shrinking annotations (then the alert list) until the content fits ``budget`` bytes.

    Never raises for size: as a last resort the body and HTML are cut with a note.
    """
    max_bytes, max_alerts = 16384, MAX_ALERTS_SHOWN
    for _ in range(16):
        content = render_incident(group, view, max_bytes, max_alerts)
        if content_size(content) <= budget:
            return content
        if max_bytes > 256:
            max_bytes //= 2
        elif max_alerts > 1:
            max_alerts = max(1, max_alerts // 2)
        else:
            break
    note = "\n… [message truncated to fit the Matrix event size limit]"
    content["body"], _ = truncate_utf8(content["body"], budget // 3)
    content["body"] += note
    content["formatted_body"] = sanitise_html(f"<pre>{html.escape(content['body'])}</pre>")
    return content


def make_edit(original_event_id: str, new_content: dict[str, Any], budget: int = CONTENT_BUDGET) -> dict[str, Any]:
    """An ``m.replace`` edit of ``original_event_id`` (Client-Server API, "Event replacements").

    The fallback ``body`` for clients without edit support is the new body, cut so the whole edit stays
    within ``budget`` bytes. Edits carry empty ``m.mentions`` so they never re-page anyone.
    """
    inner = {k: v for k, v in new_content.items() if k != "m.mentions"}
    inner["m.mentions"] = {}
    remaining = max(256, budget - content_size(inner) - 200)
    fallback, dropped = truncate_utf8(new_content["body"], remaining)
    return {
        "msgtype": new_content["msgtype"],
        "body": "* " + fallback + (" …" if dropped else ""),
        "m.new_content": inner,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
        "m.mentions": {},
    }


def thread_notice(root_event_id: str, text: str, html_text: str | None = None) -> dict[str, Any]:
    """An ``m.notice`` in the thread of ``root_event_id`` (Client-Server API, "Threading"), with a reply fallback.

    Thread updates are notices on purpose: they inform and must not page (the root ``m.text`` did that).
    """
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": text,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root_event_id,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root_event_id},
        },
        "m.mentions": {},
    }
    if html_text is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = sanitise_html(html_text)
    return content
