"""The incident state machine and the Matrix side of the bridge.

:class:`IncidentManager` turns parsed alert groups into incidents (one per source and dedup key), queues the
Matrix messages they imply in the database outbox, sends them (creating/joining rooms on the way), and
handles chat commands and reactions from appservice transactions.

States: ``firing`` -> ``acknowledged`` -> ``resolved`` (``!unack`` goes back to ``firing``). A firing
notification for a key whose last incident is resolved opens a new incident.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall

from appservices.common.client import MatrixClient, MatrixRequestError

from . import store
from .commands import ACK_REACTIONS, HELP_TEXT, Command, CommandError, parse_command, parse_duration
from .config import AlertsConfig
from .listener import IncidentListener
from .metrics import AlertMetrics
from .models import FIRING, RESOLVED, AlertGroup
from .render import IncidentView, make_edit, render_fitted, thread_notice
from .routing import Route
from .store import Database, Incident, Txn, now_ms

logger = logging.getLogger(__name__)

ACKNOWLEDGED = "acknowledged"
MAX_FLUSH_ROUNDS = 50


def _fmt_ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class IncidentManager:
    """Incidents, their messages and their chat handling.

    Args:
        config: the bridge config.
        db: the started :class:`~appservices.alerts.store.Database`.
        client: client-server API client with the bridge's ``as_token``.
        metrics: the bridge's metrics.
    """

    def __init__(self, config: AlertsConfig, db: Database, client: MatrixClient, metrics: AlertMetrics) -> None:
        self.config = config
        self.db = db
        self.client = client
        self.metrics = metrics
        self.bot_user_id = config.registration.bot_user_id(config.server_name)
        self.listeners: list[IncidentListener] = []
        self._flushing = False
        self._flush_again = False
        self._retry: LoopingCall | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def add_listener(self, listener: IncidentListener) -> None:
        """Call ``listener``'s ``on_incident_*`` methods on every incident change (see :mod:`.listener`)."""
        self.listeners.append(listener)

    def start(self) -> None:
        """Send whatever the outbox holds (messages not confirmed before a restart) and retry periodically."""
        self._retry = LoopingCall(self.flush)
        self._retry.start(self.config.retry_interval_s, now=True)
        self.refresh_open_gauge()

    def _notify(self, method: str, incident: Incident, *args: Any) -> None:
        for listener in self.listeners:
            fn = getattr(listener, method, None)
            if fn is None:
                continue
            d = maybeDeferred(fn, incident, *args)
            d.addErrback(lambda f, m=method: logger.error("listener %s failed: %s", m, f.getTraceback()))

    @inlineCallbacks
    def refresh_open_gauge(self) -> Any:
        """Set the ``tocsin_incidents_open`` gauge from the database."""
        rows = yield self.db.run(store.count_open)
        totals = {"firing": 0, ACKNOWLEDGED: 0}
        for r in rows:
            totals[r["state"]] = totals.get(r["state"], 0) + int(r["n"])
        for state, n in totals.items():
            self.metrics.incidents_open.labels(state).set(n)

    # -- ingest ---------------------------------------------------------------------------------------------

    @inlineCallbacks
    def ingest(self, group: AlertGroup) -> Any:
        """Store ``group`` as a new incident or an update of the open one, and queue its messages.

        Fires (once everything is committed) with the incident ID, or ``None`` if the notification only
        resolves alerts no open incident knows (nothing to show). Sending happens afterwards.
        """
        route = self.config.router.route_for(group.source, group.routing_labels)
        incident, events = yield self.db.run(self._store_group, group, route, now_ms())
        for alert in group.alerts:
            self.metrics.alerts_received.labels(group.source, alert.status).inc()
        self.flush()
        if incident is not None:
            for name, actor in events:
                if name == "opened":
                    self._notify("on_incident_opened", incident)
                elif name == "acknowledged":
                    self.metrics.acknowledgements.labels("source").inc()
                    self._observe_tta(incident)
                    self._notify("on_incident_acknowledged", incident, actor)
                elif name == "resolved":
                    self._notify("on_incident_resolved", incident, actor)
            self.refresh_open_gauge()
        return incident.incident_id if incident is not None else None

    def _store_group(
        self, txn: Txn, group: AlertGroup, route: Route, ts: int
    ) -> tuple[Incident | None, list[tuple[str, str | None]]]:
        events: list[tuple[str, str | None]] = []
        inc = store.get_open_incident(txn, group.source, group.dedup_key)
        if inc is None:
            if group.status == RESOLVED:
                return None, events
            inc = store.create_incident(txn, group, route.name, route.room, route.escalation_policy, ts)
            store.record_action(txn, inc.incident_id, "opened", "source", ts, group.title)
            store.enqueue(txn, inc.incident_id, "root", {}, ts)
            events.append(("opened", None))
            if group.source_ack_by:
                self._ack_in_txn(txn, inc, group.source_ack_by, ts, None)
                events.append(("acknowledged", group.source_ack_by))
            return store.get_incident(txn, inc.incident_id), events

        iid = inc.incident_id
        new_firing, newly_resolved, refired = [], [], []
        for alert in group.alerts:
            prev = store.upsert_alert(txn, iid, alert, ts)
            name = alert.annotations.get("summary") or alert.labels.get("alertname") or alert.fingerprint
            if prev is None and alert.status == FIRING:
                new_firing.append(name)
            elif prev == FIRING and alert.status == RESOLVED:
                newly_resolved.append(name)
            elif prev == RESOLVED and alert.status == FIRING:
                refired.append(name)
        store.update_incident(
            txn, iid, group_json=store.group_json(group), title=group.title, severity=group.severity,
            notifications=inc.notifications + 1, updated_ts=ts,
        )
        if group.update_note:
            store.record_action(txn, iid, "source_update", "source", ts, group.update_note)
            store.enqueue(txn, iid, "thread", {"text": group.update_note}, ts)
        if group.source_ack_by and inc.state == FIRING:
            self._ack_in_txn(txn, inc, group.source_ack_by, ts, None)
            events.append(("acknowledged", group.source_ack_by))
        if group.status == RESOLVED:
            store.update_incident(txn, iid, state=RESOLVED, resolved_ts=ts, resolved_by="source")
            store.record_action(txn, iid, "resolved", "source", ts)
            took = _fmt_duration((ts - inc.created_ts) / 1000)
            store.enqueue(txn, iid, "thread", {"text": f"✅ Resolved by {group.source} after {took}."}, ts)
            events.append(("resolved", "source"))
        else:
            parts = []
            if new_firing:
                parts.append("🔥 Now firing: " + "; ".join(new_firing))
            if refired:
                parts.append("🔁 Firing again: " + "; ".join(refired))
            if newly_resolved:
                parts.append("✅ Resolved: " + "; ".join(newly_resolved))
            muted = inc.muted_until_ts is not None and inc.muted_until_ts > ts
            if parts:
                store.enqueue(txn, iid, "thread", {"text": "\n".join(parts)}, ts)
            elif not muted and not group.update_note:
                store.enqueue(
                    txn, iid, "thread", {"text": f"🔔 Still firing (notification #{inc.notifications + 1})."}, ts
                )
        store.enqueue(txn, iid, "edit", {}, ts)
        return store.get_incident(txn, iid), events

    # -- sending --------------------------------------------------------------------------------------------

    @inlineCallbacks
    def flush(self) -> Any:
        """Send queued messages in order; a failure leaves the message queued for the next retry.

        Messages of an incident stay in order: after a failure the incident's later messages wait.
        """
        if self._flushing:
            self._flush_again = True
            return
        self._flushing = True
        try:
            for _ in range(MAX_FLUSH_ROUNDS):
                self._flush_again = False
                rows = yield self.db.run(store.pending_outbox)
                blocked: set[str] = set()
                for row in rows:
                    if row["incident_id"] in blocked:
                        continue
                    try:
                        yield self._send_row(row)
                    except Exception as e:  # noqa: BLE001 - any failure means "retry later"
                        logger.warning("sending outbox #%s failed: %s", row["seq"], e)
                        self.metrics.send_failures.inc()
                        blocked.add(row["incident_id"])
                        yield self.db.run(store.outbox_failed, row["seq"])
                if not self._flush_again:
                    break
        finally:
            self._flushing = False

    def _view(self, txn: Txn, incident: Incident) -> tuple[AlertGroup, IncidentView]:
        group = store.load_group(txn, incident)
        route = self.config.router.by_name(incident.route)
        mentions = list(route.mentions) if route else []
        mentions += [m for m in group.mentions if m not in mentions]
        view = IncidentView(
            incident_id=incident.incident_id,
            state=incident.state,
            route=incident.route,
            acknowledged_by=incident.acknowledged_by,
            resolved_by=incident.resolved_by,
            assignee=incident.assignee,
            notifications=incident.notifications,
            muted_until_ms=incident.muted_until_ts if (incident.muted_until_ts or 0) > now_ms() else None,
            mentions=mentions,
        )
        return group, view

    def _prepare_row(self, txn: Txn, row: dict[str, Any]) -> tuple[Incident, dict[str, Any] | None]:
        incident = store.get_incident(txn, row["incident_id"])
        assert incident is not None
        kind = row["kind"]
        if kind == "edit" and store.later_edit_pending(txn, incident.incident_id, row["seq"]):
            return incident, None
        if kind == "root":
            group, view = self._view(txn, incident)
            return incident, render_fitted(group, view)
        if incident.root_event_id is None:
            raise RuntimeError(f"incident {incident.incident_id} has no root message yet")
        if kind == "edit":
            group, view = self._view(txn, incident)
            return incident, make_edit(incident.root_event_id, render_fitted(group, view, budget=28000))
        payload = json.loads(row["payload_json"])
        return incident, thread_notice(incident.root_event_id, payload["text"], payload.get("html"))

    def _sent(self, txn: Txn, row: dict[str, Any], event_id: str | None, ts: int) -> None:
        if event_id is not None:
            store.record_message(txn, event_id, row["incident_id"], row["kind"], ts)
            if row["kind"] == "root":
                store.update_incident(txn, row["incident_id"], root_event_id=event_id)
        store.outbox_done(txn, row["seq"])

    @inlineCallbacks
    def _send_row(self, row: dict[str, Any]) -> Any:
        incident, content = yield self.db.run(self._prepare_row, row)
        if content is None:
            yield self.db.run(self._sent, row, None, now_ms())
            return
        route = self.config.router.by_name(incident.route) or self.config.router.default
        room_id = yield self.ensure_room(incident.room, route)
        resp = yield self.client.send_event(room_id, "m.room.message", content, row["txn_id"])
        yield self.db.run(self._sent, row, resp["event_id"], now_ms())
        self.metrics.messages_sent.labels(row["kind"]).inc()
        if row["kind"] == "root":
            self._notify("on_alert_posted", incident, room_id, resp["event_id"])

    @inlineCallbacks
    def ensure_room(self, room: str, route: Route) -> Any:
        """The room ID for a route's ``room`` (alias or ID); resolves, joins or creates it as needed.

        A missing alias on our server is created as a private room named after the route, with the route's
        team invited at ``team_power_level`` (the bot, as creator, has full power).

        Raises (in the Deferred):
            MatrixRequestError: the homeserver refused (e.g. the alias is outside our namespace).
        """
        cached = yield self.db.run(store.get_room_id, room)
        if cached:
            return cached
        if room.startswith("!"):
            resp = yield self.client.join(room)
            room_id = resp["room_id"]
        else:
            try:
                resp = yield self.client.resolve_alias(room)
                room_id = resp["room_id"]
                yield self.client.join(room)
            except MatrixRequestError as e:
                if e.code != 404:
                    raise
                localpart = room[1:].split(":", 1)[0]
                resp = yield self.client.create_room(
                    {
                        "preset": "private_chat",
                        "room_alias_name": localpart,
                        "name": f"Alerts: {route.name}",
                        "topic": f"Incidents routed to {route.name}. Reply to an alert with !help.",
                        "invite": list(route.invite),
                    }
                )
                room_id = resp["room_id"]
                yield self._grant_team_power(room_id, route)
        yield self.db.run(store.set_room_id, room, room_id)
        return room_id

    @inlineCallbacks
    def _grant_team_power(self, room_id: str, route: Route) -> Any:
        """Raise the route's team to ``team_power_level`` in a room the bot just created.

        Done after creation rather than with ``power_level_content_override``: that override replaces the whole
        ``users`` map, which drops the creator before room version 12 (locking the bot out of its own room)
        while version 12 forbids listing the creator at all. Editing the generated event works in both.
        """
        if not route.invite:
            return
        pl = yield self.client.get_state_event(room_id, "m.room.power_levels")
        users = dict(pl.get("users") or {})
        if all(users.get(u) == route.team_power_level for u in route.invite):
            return
        users.update({u: route.team_power_level for u in route.invite})
        yield self.client.send_state_event(room_id, "m.room.power_levels", dict(pl, users=users))

    # -- chat -----------------------------------------------------------------------------------------------

    @inlineCallbacks
    def on_transaction(self, txn_id: str, events: list[dict[str, Any]]) -> Any:
        """Handle an appservice transaction: commands, ✅ reactions and invites of the bot."""
        for ev in events:
            try:
                yield self._on_event(ev)
            except Exception:  # noqa: BLE001 - one bad event must not block the rest of the transaction
                logger.exception("handling event %s failed", ev.get("event_id"))

    @inlineCallbacks
    def _on_event(self, ev: dict[str, Any]) -> Any:
        sender = ev.get("sender", "")
        etype = ev.get("type")
        content = ev.get("content") or {}
        room_id = ev.get("room_id", "")
        if etype == "m.room.member" and ev.get("state_key") == self.bot_user_id:
            if content.get("membership") == "invite":
                yield self.client.join(room_id)
            return
        if sender == self.bot_user_id or self.config.registration.is_interested_in_user(sender):
            return
        relates = content.get("m.relates_to") or {}
        if etype == "m.reaction":
            if relates.get("rel_type") != "m.annotation" or relates.get("key") not in ACK_REACTIONS:
                return
            target, command = relates.get("event_id"), Command("ack")
        elif etype == "m.room.message":
            body = content.get("body")
            if not isinstance(body, str):
                return
            try:
                command = parse_command(body)
            except CommandError as e:
                command, error = None, str(e)
            else:
                error = None
            if command is None and error is None:
                return
            target = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
            target = target or (relates.get("m.in_reply_to") or {}).get("event_id")
        else:
            return
        if not target:
            return
        incident = yield self.db.run(store.incident_for_event_in_room, target, room_id)
        if incident is None:
            return
        first = yield self.db.run(store.mark_event_handled, ev.get("event_id", ""), now_ms())
        if not first:
            return
        if command is None:
            yield self._reply(incident, f"⚠️ {error}")
            return
        level = yield self.power_level(room_id, sender)
        if level < self.config.command_power_level:
            yield self._reply(
                incident,
                f"⛔ {sender}: acting on incidents needs power level {self.config.command_power_level} "
                f"in this room (you have {level}).",
            )
            return
        yield self.apply_command(incident.incident_id, command, sender, ev.get("event_id"), etype == "m.reaction")

    @inlineCallbacks
    def power_level(self, room_id: str, user_id: str) -> Any:
        """``user_id``'s power level in ``room_id`` (its ``m.room.power_levels``; 0 when unreadable)."""
        try:
            pl = yield self.client.get_state_event(room_id, "m.room.power_levels")
        except MatrixRequestError:
            return 0
        users = pl.get("users") or {}
        level = users.get(user_id, pl.get("users_default", 0))
        return int(level) if isinstance(level, int) else 0

    @inlineCallbacks
    def _reply(self, incident: Incident, text: str) -> Any:
        yield self.db.run(store.enqueue, incident.incident_id, "thread", {"text": text}, now_ms())
        self.flush()

    @inlineCallbacks
    def apply_command(
        self, incident_id: str, command: Command, actor: str, event_id: str | None = None, reaction: bool = False
    ) -> Any:
        """Apply ``command`` by ``actor`` (a user ID) to the incident, record it and answer in the thread.

        Fires with the incident after the change. Listeners are told about ack/unack/resolve.
        """
        silence_id = None
        if command.name == "silence":
            incident = yield self.db.run(store.get_incident, incident_id)
            silence_id = yield self._maybe_create_silence(incident, command, actor)
        result = yield self.db.run(self._apply_in_txn, incident_id, command, actor, event_id, now_ms(), silence_id)
        incident, event = result
        self.flush()
        if event == "acknowledged":
            self.metrics.acknowledgements.labels("reaction" if reaction else "command").inc()
            self._observe_tta(incident)
            self._notify("on_incident_acknowledged", incident, actor)
        elif event == "unacknowledged":
            self._notify("on_incident_unacknowledged", incident, actor)
        elif event == "resolved":
            self._notify("on_incident_resolved", incident, actor)
        if event:
            self.refresh_open_gauge()
        return incident

    def _observe_tta(self, incident: Incident) -> None:
        if incident.acknowledged_ts is not None:
            self.metrics.time_to_acknowledge.observe(max(0, incident.acknowledged_ts - incident.created_ts) / 1000)

    def _ack_in_txn(self, txn: Txn, inc: Incident, actor: str, ts: int, event_id: str | None) -> None:
        store.update_incident(
            txn, inc.incident_id, state=ACKNOWLEDGED, acknowledged_by=actor,
            acknowledged_ts=inc.acknowledged_ts if inc.acknowledged_ts is not None else ts, updated_ts=ts,
        )
        store.record_action(txn, inc.incident_id, "ack", actor, ts, None, event_id)
        store.enqueue(txn, inc.incident_id, "thread", {"text": f"👀 Acknowledged by {actor}."}, ts)
        store.enqueue(txn, inc.incident_id, "edit", {}, ts)

    def _apply_in_txn(
        self, txn: Txn, incident_id: str, command: Command, actor: str, event_id: str | None, ts: int,
        silence_id: str | None,
    ) -> tuple[Incident, str | None]:
        inc = store.get_incident(txn, incident_id)
        assert inc is not None
        iid, name = inc.incident_id, command.name
        event: str | None = None

        def say(text: str) -> None:
            store.enqueue(txn, iid, "thread", {"text": text}, ts)

        if name == "help":
            say(HELP_TEXT)
        elif name == "status":
            say(self._status_text(txn, inc, ts))
        elif inc.state == RESOLVED and name in ("ack", "unack", "resolve", "silence"):
            say(f"Incident {iid} is already resolved ({inc.resolved_by}, {_fmt_ts(inc.resolved_ts)}).")
        elif name == "ack":
            if inc.state == ACKNOWLEDGED:
                say(f"Already acknowledged by {inc.acknowledged_by}.")
            else:
                self._ack_in_txn(txn, inc, actor, ts, event_id)
                event = "acknowledged"
        elif name == "unack":
            if inc.state != ACKNOWLEDGED:
                say(f"Incident {iid} is not acknowledged.")
            else:
                store.update_incident(txn, iid, state=FIRING, acknowledged_by=None, updated_ts=ts)
                store.record_action(txn, iid, "unack", actor, ts, None, event_id)
                say(f"↩️ Acknowledgement withdrawn by {actor}; the incident is firing again.")
                store.enqueue(txn, iid, "edit", {}, ts)
                event = "unacknowledged"
        elif name == "resolve":
            store.update_incident(txn, iid, state=RESOLVED, resolved_ts=ts, resolved_by=actor, updated_ts=ts)
            store.record_action(txn, iid, "resolve", actor, ts, None, event_id)
            say(f"✅ Resolved by {actor} after {_fmt_duration((ts - inc.created_ts) / 1000)}.")
            store.enqueue(txn, iid, "edit", {}, ts)
            event = "resolved"
        elif name == "assign":
            store.update_incident(txn, iid, assignee=command.arg, updated_ts=ts)
            store.record_action(txn, iid, "assign", actor, ts, command.arg, event_id)
            say(f"👤 Assigned to {command.arg} by {actor}.")
            store.enqueue(txn, iid, "edit", {}, ts)
        elif name == "note":
            store.record_action(txn, iid, "note", actor, ts, command.arg, event_id)
            say(f"📝 Note by {actor}: {command.arg}")
        elif name == "silence":
            seconds = parse_duration(command.arg)
            until = ts + seconds * 1000
            if silence_id:
                store.record_action(txn, iid, "silence", actor, ts, f"alertmanager:{silence_id}", event_id)
                say(f"🔕 Silenced at Alertmanager until {_fmt_ts(until)} by {actor} (silence {silence_id}).")
            else:
                store.update_incident(txn, iid, muted_until_ts=until, updated_ts=ts)
                store.record_action(txn, iid, "mute", actor, ts, str(until), event_id)
                say(f"🔕 Muted in the bridge until {_fmt_ts(until)} by {actor}: repeats stay quiet.")
            store.enqueue(txn, iid, "edit", {}, ts)
        updated = store.get_incident(txn, iid)
        assert updated is not None
        return updated, event

    def _status_text(self, txn: Txn, inc: Incident, ts: int) -> str:
        group = store.load_group(txn, inc)
        firing = sum(1 for a in group.alerts if a.status == FIRING)
        lines = [
            f"Incident {inc.incident_id}: {inc.state.upper()} · {inc.severity} · route {inc.route} · {inc.source}",
            f"Opened {_fmt_ts(inc.created_ts)} ({_fmt_duration((ts - inc.created_ts) / 1000)} ago), "
            f"{firing}/{len(group.alerts)} alerts firing, {inc.notifications} notifications",
        ]
        if inc.acknowledged_by:
            lines.append(f"Acknowledged by {inc.acknowledged_by} at {_fmt_ts(inc.acknowledged_ts)}")
        if inc.assignee:
            lines.append(f"Assigned to {inc.assignee}")
        if inc.resolved_ts:
            lines.append(f"Resolved by {inc.resolved_by} at {_fmt_ts(inc.resolved_ts)}")
        if inc.muted_until_ts and inc.muted_until_ts > ts:
            lines.append(f"Muted until {_fmt_ts(inc.muted_until_ts)}")
        if inc.escalation_policy:
            lines.append(f"Escalation policy: {inc.escalation_policy}")
        return "\n".join(lines)

    @inlineCallbacks
    def _maybe_create_silence(self, incident: Incident, command: Command, actor: str) -> Any:
        """Create an Alertmanager silence (API v2 ``POST /api/v2/silences``); its ID, or ``None`` to mute here."""
        source = self.config.sources.get("alertmanager")
        if incident is None or incident.source != "alertmanager" or source is None or not source.url:
            return None
        try:
            seconds = parse_duration(command.arg)
        except CommandError:
            return None
        group = json.loads(incident.group_json)
        labels = group.get("group_labels") or group.get("common_labels") or {}
        start = datetime.now(timezone.utc)
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())
            ],
            "startsAt": start.isoformat().replace("+00:00", "Z"),
            "endsAt": (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
            "createdBy": actor,
            "comment": f"Silenced from Matrix for incident {incident.incident_id}",
        }
        try:
            resp = yield treq.post(
                source.url.rstrip("/") + "/api/v2/silences",
                data=json.dumps(body).encode(),
                headers={"Content-Type": ["application/json"]},
                timeout=10,
            )
            data = yield resp.json()
        except Exception as e:  # noqa: BLE001 - fall back to muting in the bridge
            logger.warning("creating the Alertmanager silence failed: %s", e)
            return None
        if resp.code != 200 or not isinstance(data, dict):
            logger.warning("Alertmanager refused the silence: %s %s", resp.code, data)
            return None
        return data.get("silenceID")
