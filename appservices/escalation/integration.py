"""Escalation inside the alert bridge's process: listener, read receipts, chat commands, handoffs, iCalendar.

The bridge (``python -m appservices.alerts``) enables escalation when its config has an ``escalation`` key::

    escalation:
      config: escalation.yaml           # policies, schedules, people, channels (docs/escalation.md)
      database: {engine: sqlite, args: {database: escalation.db}}   # or {engine: postgres, args: {dsn: ...}}
      receipts: auto                    # auto | ephemeral | sync
      sync_account: {user_id: "@receipts:example.com", access_token: "..."}   # for receipts: sync
      handoff_rooms: {primary: "#alerts:example.com"}
      severity_priorities: {p1: critical}

:class:`BridgeEscalation` then

- follows incidents through the bridge's ``IncidentListener`` hook and drives the
  :class:`~appservices.escalation.engine.EscalationEngine` (the route's ``escalation_policy`` if it names a policy,
  else the policy of the priority derived from the incident's ``severity``);
- reads receipts from appservice transactions: ephemeral events (Application Service API "Pushing ephemeral data",
  registration ``receive_ephemeral: true``; MSC2409's ``de.sorunome.msc2409.ephemeral`` from older homeservers),
  or, when the registration does not ask for ephemeral data, from ``/sync`` of a plain ``sync_account`` that the
  bridge invites into incident rooms (homeservers refuse ``/sync`` to appservice users; Synapse answers 500).
  ``m.read`` and ``m.read.private`` receipts on the alert, on a page, or on any later event of the incident's room
  count as read;
- answers ``!status`` (after the bridge's own answer) with the per-person trail and ``!oncall [schedule]``;
- posts a message into a schedule's team room at each handoff;
- serves ``GET /api/v1/schedules/<name>.ics`` (bearer ``api_token``) and adds the escalation metrics to ``/metrics``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import yaml
from prometheus_client import REGISTRY, generate_latest
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.web import server
from twisted.web.resource import Resource

from appservices.alerts import store as alerts_store
from appservices.alerts.commands import CommandError, parse_command
from appservices.alerts.store import Incident
from appservices.channels.factory import build_channels
from appservices.common.client import MatrixClient, MatrixRequestError
from appservices.common.transactions import AppserviceResource, bearer_token
from appservices.escalation.engine import EscalationEngine
from appservices.escalation.policy import PRIORITIES, EscalationConfig, load_escalation_config
from appservices.escalation.schedule import ScheduleError, next_handoffs, to_ical, who_is_on_call
from appservices.escalation.store import EscalationStore, Txn

logger = logging.getLogger(__name__)

RECEIPT_TYPES = ("m.read", "m.read.private")
#: Severity label values (Alertmanager, Grafana, Zabbix conventions) -> escalation priority.
DEFAULT_SEVERITY_PRIORITIES: dict[str, str] = {
    "critical": "critical", "page": "critical", "disaster": "critical", "emergency": "critical", "fatal": "critical",
    "high": "high", "error": "high", "major": "high", "average": "high",
    "warning": "warning", "warn": "warning", "minor": "warning",
    "info": "info", "information": "info", "informational": "info", "low": "info", "none": "info",
}
#: How long on_incident_opened waits for the bridge to post the alert (its room and event ID make the pages).
ROOT_WAIT_S = 15.0
#: Arrival records of room events older than this are dropped (an incident that old is read or escalated).
ROOM_EVENT_RETENTION_MS = 7 * 24 * 3600 * 1000


class EscalationSetupError(ValueError):
    """The ``escalation`` section of the bridge config (or the escalation config it names) is invalid."""


@dataclass
class EscalationSettings:
    """The bridge config's ``escalation`` section, paths resolved against the bridge config's directory.

    ``receipts``: ``auto`` (ephemeral if the registration asks for it, else ``/sync`` if ``sync_account`` is set,
    else none: escalation then goes by timeouts only), ``ephemeral`` or ``sync``. ``sync_account``:
    ``{user_id, access_token}`` of an ordinary account used for the ``/sync`` fallback.
    ``handoff_rooms``: schedule name -> room alias or ID announced into. ``ical_days``: days exported ahead.
    """

    config_path: str
    database_engine: str = "sqlite"
    database_args: dict[str, Any] = field(default_factory=dict)
    receipts: str = "auto"
    sync_account: dict[str, str] | None = None
    handoff_rooms: dict[str, str] = field(default_factory=dict)
    severity_priorities: dict[str, str] = field(default_factory=dict)
    ical_days: int = 30


def load_settings(alerts_config_path: str) -> EscalationSettings | None:
    """Read the ``escalation`` key of the bridge's YAML config; ``None`` when absent (escalation disabled).

    Raises:
        OSError: unreadable file. EscalationSetupError: a bad value (the message names the key).
    """
    with open(alerts_config_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    section = raw.get("escalation") if isinstance(raw, dict) else None
    if section is None:
        return None
    base = os.path.dirname(os.path.abspath(alerts_config_path))

    def path(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    if not isinstance(section, dict):
        raise EscalationSetupError("escalation: expected a mapping")
    unknown = sorted(set(section) - {"config", "database", "receipts", "sync_account", "handoff_rooms",
                                     "severity_priorities", "ical_days"})
    if unknown:
        raise EscalationSetupError(f"escalation.{unknown[0]}: unknown key")
    if not isinstance(section.get("config"), str):
        raise EscalationSetupError("escalation.config: required, the path of escalation.yaml")
    db = section.get("database") or {}
    if not isinstance(db, dict):
        raise EscalationSetupError("escalation.database: expected {engine: sqlite|postgres, args: {...}}")
    engine = db.get("engine", "sqlite")
    if engine not in ("sqlite", "postgres"):
        raise EscalationSetupError("escalation.database.engine: expected sqlite or postgres")
    args = dict(db.get("args") or {"database": "escalation.db"})
    if engine == "sqlite":
        if not isinstance(args.get("database"), str):
            raise EscalationSetupError("escalation.database.args.database: expected a file path")
        if args["database"] != ":memory:":
            args["database"] = path(args["database"])
    elif not isinstance(args.get("dsn"), str):
        raise EscalationSetupError("escalation.database.args.dsn: expected a libpq DSN string")
    receipts = section.get("receipts", "auto")
    if receipts not in ("auto", "ephemeral", "sync"):
        raise EscalationSetupError("escalation.receipts: expected auto, ephemeral or sync")
    account = section.get("sync_account")
    if account is not None and not (isinstance(account, dict) and isinstance(account.get("user_id"), str)
                                    and isinstance(account.get("access_token"), str)):
        raise EscalationSetupError("escalation.sync_account: expected {user_id: '@u:server', access_token: '...'}")
    if receipts == "sync" and account is None:
        raise EscalationSetupError("escalation.sync_account: required with receipts: sync (homeservers do not "
                                   "let appservice users /sync)")
    rooms = section.get("handoff_rooms") or {}
    if not isinstance(rooms, dict) or not all(isinstance(v, str) and v[:1] in "#!" for v in rooms.values()):
        raise EscalationSetupError("escalation.handoff_rooms: expected {schedule: '#alias:server' or '!id:server'}")
    sev = section.get("severity_priorities") or {}
    if not isinstance(sev, dict) or not all(v in PRIORITIES for v in sev.values()):
        raise EscalationSetupError(f"escalation.severity_priorities: values must be one of {', '.join(PRIORITIES)}")
    days = section.get("ical_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
        raise EscalationSetupError("escalation.ical_days: expected an integer from 1 to 366")
    return EscalationSettings(
        config_path=path(section["config"]), database_engine=engine, database_args=args, receipts=receipts,
        sync_account=dict(account) if account else None,
        handoff_rooms=dict(rooms), severity_priorities={str(k).lower(): v for k, v in sev.items()}, ical_days=days,
    )


def registration_wants_ephemeral(registration_path: str) -> bool:
    """True if the registration asks the homeserver for ephemeral events (``receive_ephemeral``, or MSC2409's
    ``de.sorunome.msc2409.push_ephemeral`` which Synapse still honours)."""
    with open(registration_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    return bool(raw.get("receive_ephemeral") or raw.get("de.sorunome.msc2409.push_ephemeral"))


def receipts_of(ephemeral: list[dict[str, Any]]) -> list[tuple[str, str, str, int | None]]:
    """``(user_id, room_id, event_id, ts_ms)`` of every ``m.read``/``m.read.private`` receipt in a list of
    ``m.receipt`` EDUs (spec: Client-Server API "Receipts"; the AS API adds ``room_id`` to each)."""
    out = []
    for edu in ephemeral:
        if not isinstance(edu, dict) or edu.get("type") != "m.receipt" or not isinstance(edu.get("room_id"), str):
            continue
        content = edu.get("content")
        if not isinstance(content, dict):
            continue
        for event_id, by_type in content.items():
            if not isinstance(by_type, dict):
                continue
            for rtype in RECEIPT_TYPES:
                by_user = by_type.get(rtype)
                if not isinstance(by_user, dict):  # a malformed EDU is skipped, not the whole transaction
                    continue
                for user_id, info in by_user.items():
                    ts = info.get("ts") if isinstance(info, dict) else None
                    out.append((user_id, edu["room_id"], event_id, ts if isinstance(ts, int) else None))
    return out


def _fmt(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class BridgeEscalation:
    """Escalation attached to a running :class:`~appservices.alerts.app.AlertBridge` (see the module docstring).

    Build it after the bridge and before ``bridge.start()``; call :meth:`start` after ``bridge.start()``.

    Raises:
        EscalationSetupError: the escalation config is invalid (message names the key).
    """

    def __init__(self, bridge: Any, settings: EscalationSettings) -> None:
        self.bridge = bridge
        self.settings = settings
        self.reactor = bridge.reactor
        try:
            self.config: EscalationConfig = load_escalation_config(settings.config_path)
        except ScheduleError as e:  # PolicyError is a ScheduleError
            raise EscalationSetupError(f"{settings.config_path}: {e}") from e
        for name in settings.handoff_rooms:
            if name not in self.config.schedules:
                raise EscalationSetupError(f"escalation.handoff_rooms.{name}: no schedule named {name!r}")
        if settings.database_engine == "sqlite":
            self.store = EscalationStore.sqlite(settings.database_args["database"])
        else:
            self.store = EscalationStore.postgres(settings.database_args["dsn"])
        try:
            channels, webhook = build_channels(self.config.channels, self.reactor, self.store, self.send_message)
        except ScheduleError as e:
            raise EscalationSetupError(f"{settings.config_path}: {e}") from e
        self.engine = EscalationEngine(self.reactor, self.store, self.config.policies, self.config.schedules,
                                       channels, webhook)
        self.bot_user_id: str = bridge.manager.bot_user_id
        self.receipt_mode = settings.receipts
        if self.receipt_mode == "auto":
            wants = registration_wants_ephemeral(bridge.config.registration_path)
            self.receipt_mode = "ephemeral" if wants else ("sync" if settings.sync_account else "none")
        self.sync_client: MatrixClient | None = None
        if self.receipt_mode == "sync" and settings.sync_account:
            self.sync_client = MatrixClient(bridge.config.homeserver_url, settings.sync_account["access_token"],
                                            timeout_s=60)
        self._watched_rooms: set[str] = set()
        self._chains: dict[str, defer.Deferred[Any]] = {}
        self._ephemeral: dict[str, list[dict[str, Any]]] = {}
        self._running = False
        self._handoff_calls: dict[str, Any] = {}
        self.appservice = AppserviceResource(bridge.config.registration.hs_token, self.on_transaction)
        bridge.manager.add_listener(self)
        bridge.site.resource = EscalationResource(bridge.site.resource, self)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Start the database thread and the engine (re-arming persisted timers), catch up with incidents changed
        while the engine was down, start handoff announcements and, in ``sync`` mode, the receipt /sync loop."""
        self._running = True
        self.store.start(self.reactor)
        self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        yield self.engine.start()
        yield self.reconcile()
        for name in self.settings.handoff_rooms:
            # Not awaited: an unreachable homeserver (retried with backoff) must not hold up receipts.
            self._catch_up_handoffs(name).addErrback(
                lambda f, n=name: logger.error("handoff catch-up for %s failed: %s", n, f.getTraceback()))
            self._arm_handoff(name)
        if self.receipt_mode == "sync":
            self.reactor.callLater(0, self._sync_loop)
        elif self.receipt_mode == "none":
            logger.warning("escalation: no read receipts (set receive_ephemeral: true in the registration, or "
                           "escalation.sync_account); unread pages escalate by timeouts only")
        logger.info("escalation started (receipts via %s)", self.receipt_mode)

    def stop(self) -> None:
        """Cancel in-memory timers; their rows stay pending for the next start."""
        self._running = False
        self.engine.stop()
        for call in self._handoff_calls.values():
            if call.active():
                call.cancel()

    @defer.inlineCallbacks
    def reconcile(self) -> Any:
        """Bring the engine in line with the bridge's incidents after a crash between a change and its hand-over:
        open incidents the engine never heard of start escalating; acks, unacks and resolutions are applied."""
        known = yield self.store.run(EscalationStore.incident_states)

        def open_incidents(txn: Any) -> list[Incident]:
            return (alerts_store.list_incidents(txn, "firing") + alerts_store.list_incidents(txn, "acknowledged"))

        def get(txn: Any, ids: list[str]) -> list[Incident]:
            return [i for i in (alerts_store.get_incident(txn, x) for x in ids) if i is not None]

        bridge_open = yield self.bridge.db.run(open_incidents)
        for inc in bridge_open:
            if inc.incident_id not in known:
                self.on_incident_opened(inc)
                if inc.state == "acknowledged":
                    self.on_incident_acknowledged(inc, inc.acknowledged_by or "unknown")
        unresolved = [i for i, s in known.items() if s != "resolved"]
        for inc in (yield self.bridge.db.run(get, unresolved)):
            state = known[inc.incident_id]
            if inc.state == "resolved":
                self.on_incident_resolved(inc, inc.resolved_by or "unknown")
            elif inc.state == "acknowledged" and state == "open":
                self.on_incident_acknowledged(inc, inc.acknowledged_by or "unknown")
            elif inc.state == "firing" and state == "acknowledged":
                self.on_incident_unacknowledged(inc, "unknown")
        yield defer.DeferredList(list(self._chains.values()))

    # -- IncidentListener ---------------------------------------------------------------------------------------

    def _serial(self, incident_id: str, fn: Callable[[], Any]) -> "defer.Deferred[None]":
        """Run ``fn`` after the incident's previous hand-over finished, so an ack never overtakes its opening.

        Fires with None when ``fn`` is done; its failure is logged (the bridge's change stands regardless).
        """
        prev = self._chains.get(incident_id) or defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()

        def run(_: Any) -> None:
            d = defer.maybeDeferred(fn)
            d.addErrback(lambda f: logger.error("escalation of %s failed: %s", incident_id, f.getTraceback()))
            d.addBoth(lambda _: done.callback(None))

        def forget(_: Any) -> None:
            if self._chains.get(incident_id) is done:
                del self._chains[incident_id]

        prev.addCallback(run)
        self._chains[incident_id] = done
        done.addCallback(forget)
        return done

    def priority_of(self, severity: str) -> str:
        """Escalation priority of an incident severity (``severity_priorities`` first, unknown -> ``high``)."""
        s = (severity or "").lower()
        return self.settings.severity_priorities.get(s) or DEFAULT_SEVERITY_PRIORITIES.get(s, "high")

    def on_incident_opened(self, incident: Incident) -> "defer.Deferred[Any]":
        """Start the policy once the bridge has posted the alert (its room and event are what pages link to)."""
        return self._serial(incident.incident_id, lambda: self._opened(incident))

    @defer.inlineCallbacks
    def _opened(self, incident: Incident) -> Any:
        root, room_id = yield self._wait_for_root(incident.incident_id, incident.room)
        if room_id is not None:
            yield self._watch_room(room_id)
        yield self.engine.incident_opened(
            incident.incident_id, priority=self.priority_of(incident.severity), summary=incident.title,
            room_id=room_id, alert_event_id=root, route=incident.route,
            alert_key=f"{incident.source}:{incident.dedup_key}", policy_name=incident.escalation_policy,
        )

    @defer.inlineCallbacks
    def _watch_room(self, room_id: str) -> Any:
        """In ``sync`` mode, invite the receipt account into the incident room (it joins from its /sync)."""
        if self.receipt_mode != "sync" or self.settings.sync_account is None or room_id in self._watched_rooms:
            return
        try:
            yield self.bridge.client.invite(room_id, self.settings.sync_account["user_id"])
        except MatrixRequestError as e:
            # Already joined or invited is the common case after a restart.
            logger.info("inviting the receipt account into %s: %s", room_id, e)
        self._watched_rooms.add(room_id)

    @defer.inlineCallbacks
    def _wait_for_root(self, incident_id: str, room: str) -> Any:
        def look(txn: Any) -> tuple[str | None, str | None]:
            inc = alerts_store.get_incident(txn, incident_id)
            return (inc.root_event_id if inc else None), alerts_store.get_room_id(txn, room)

        root, room_id = None, None
        for _ in range(int(ROOT_WAIT_S / 0.1)):
            root, room_id = yield self.bridge.db.run(look)
            if root is not None:
                break
            yield deferLater(self.reactor, 0.1, lambda: None)
        if root is None:
            # The homeserver is unreachable: page anyway; phone and email need no room.
            logger.warning("incident %s: alert not posted after %ss; escalating without it", incident_id,
                           ROOT_WAIT_S)
        return root, room_id

    def on_incident_acknowledged(self, incident: Incident, actor: str) -> "defer.Deferred[Any]":
        """Bridge listener: ``actor`` (user ID) acknowledged; the engine stops paging (see
        ``EscalationEngine.incident_acknowledged``). Queued after the incident's earlier changes; fires with None.
        """
        return self._serial(incident.incident_id,
                            lambda: self.engine.incident_acknowledged(incident.incident_id, actor))

    def on_incident_unacknowledged(self, incident: Incident, actor: str) -> "defer.Deferred[Any]":
        """Bridge listener: ``actor`` withdrew the acknowledgement; escalation restarts at tier 1. Fires with None."""
        return self._serial(incident.incident_id,
                            lambda: self.engine.incident_unacknowledged(incident.incident_id, actor))

    def on_incident_resolved(self, incident: Incident, actor: str) -> "defer.Deferred[Any]":
        """Bridge listener: the incident resolved; every pending timer is cancelled. Fires with None."""
        return self._serial(incident.incident_id, lambda: self.engine.incident_resolved(incident.incident_id))

    def on_alert_posted(self, incident: Incident, room_id: str, event_id: str) -> "defer.Deferred[Any]":
        """Bridge listener: the alert message is posted. If escalation started without it (the homeserver was
        unreachable), later pages link to it and receipts on it count (``EscalationEngine.alert_posted``)."""

        @defer.inlineCallbacks
        def link() -> Any:
            yield self._watch_room(room_id)
            yield self.engine.alert_posted(incident.incident_id, room_id, event_id)

        return self._serial(incident.incident_id, link)

    # -- Matrix -------------------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def send_message(self, room_id: str, content: dict[str, Any], txn_id: str) -> Any:
        """The Matrix channel's sender: ``m.room.message`` as the bridge's bot; fires with the event ID."""
        resp = yield self.bridge.client.send_event(room_id, "m.room.message", content, txn_id)
        return resp["event_id"]

    def stash_ephemeral(self, txn_id: str, body: bytes) -> None:
        """Keep a transaction's ephemeral events until :meth:`on_transaction` runs for it."""
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return
        if isinstance(decoded, dict):
            eph = decoded.get("ephemeral") or decoded.get("de.sorunome.msc2409.ephemeral") or []
            if isinstance(eph, list) and eph:
                self._ephemeral[txn_id] = eph

    @defer.inlineCallbacks
    def on_transaction(self, txn_id: str, events: list[dict[str, Any]]) -> Any:
        """An appservice transaction: the bridge handles its events first (commands, reactions), then we record
        the room events' order, answer ``!status``/``!oncall`` and apply the read receipts."""
        ephemeral = self._ephemeral.pop(txn_id, [])
        yield self.bridge.manager.on_transaction(txn_id, events)
        now = int(self.reactor.seconds() * 1000)

        def record(txn: Txn) -> list[dict[str, Any]]:
            fresh = []
            for ev in events:
                if isinstance(ev.get("event_id"), str) and isinstance(ev.get("room_id"), str):
                    if EscalationStore.record_room_event(txn, ev["room_id"], ev["event_id"], now):
                        fresh.append(ev)
            return fresh

        fresh = yield self.store.run(record)
        for ev in fresh:
            try:
                yield self._on_command(ev)
            except Exception:  # noqa: BLE001 - one bad command must not block the transaction's receipts
                logger.exception("escalation: handling %s failed", ev.get("event_id"))
        if self.receipt_mode == "ephemeral":
            yield self.on_receipts(receipts_of(ephemeral))

    @defer.inlineCallbacks
    def on_receipts(self, receipts: list[tuple[str, str, str, int | None]]) -> Any:
        """Apply read receipts ``(user_id, room_id, event_id, ts_ms)``: a receipt on the alert, on one of its
        pages or on any event that reached us after the alert marks the incident read by that user."""
        for user_id, room_id, event_id, ts in receipts:
            logger.debug("receipt: %s read %s in %s at %s", user_id, event_id, room_id, ts)
            if user_id == self.bot_user_id or self.bridge.config.registration.is_interested_in_user(user_id):
                continue
            ids = yield self.store.run(lambda txn, u=user_id, r=room_id, e=event_id: self._read_by(txn, u, r, e))
            for incident_id in ids:
                yield self.engine.mark_read(incident_id, user_id, ts)

    @staticmethod
    def _read_by(txn: Txn, user_id: str, room_id: str, event_id: str) -> list[str]:
        read = []
        seq = EscalationStore.room_event_seq(txn, event_id)
        for inc in EscalationStore.unread_incidents_in_room(txn, room_id, user_id):
            anchors = [inc["alert_event_id"]] if inc["alert_event_id"] else []
            anchors += EscalationStore.matrix_page_events(txn, inc["incident_id"])
            if event_id in anchors:
                read.append(inc["incident_id"])
                continue
            seqs = [s for s in (EscalationStore.room_event_seq(txn, a) for a in anchors) if s is not None]
            if seq is not None and seqs and seq >= min(seqs):
                read.append(inc["incident_id"])
        return read

    @defer.inlineCallbacks
    def _on_command(self, ev: dict[str, Any]) -> Any:
        content = ev.get("content") or {}
        body = content.get("body")
        sender = ev.get("sender", "")
        if ev.get("type") != "m.room.message" or not isinstance(body, str) or sender == self.bot_user_id:
            return
        if self.bridge.config.registration.is_interested_in_user(sender):
            return
        text = "\n".join(ln for ln in body.splitlines() if not ln.startswith(">")).strip()
        if text == "!oncall" or text.startswith("!oncall "):
            yield self._answer_oncall(ev, text[len("!oncall"):].strip())
            return
        try:
            command = parse_command(body)
        except CommandError:
            return
        if command is None or command.name != "status":
            return
        relates = content.get("m.relates_to") or {}
        target = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        target = target or (relates.get("m.in_reply_to") or {}).get("event_id")
        if not target:
            return
        incident = yield self.bridge.db.run(alerts_store.incident_for_event_in_room, target, ev.get("room_id", ""))
        if incident is None:
            return
        # The trail names who was paged how and when: only for those the bridge lets act on incidents (it has
        # already answered anyone else with the power level needed).
        level = yield self.bridge.manager.power_level(ev.get("room_id", ""), sender)
        if level < self.bridge.config.command_power_level:
            return
        status = yield self.engine.status(incident.incident_id)
        text = ("Escalation: not escalated (no policy started for this incident)." if status is None
                else "Escalation trail\n" + status.render())
        yield self.bridge.db.run(alerts_store.enqueue, incident.incident_id, "thread", {"text": text},
                                 alerts_store.now_ms())
        self.bridge.manager.flush()

    def oncall_text(self, name: str | None, at: datetime) -> str:
        """The answer to ``!oncall [schedule]`` at ``at``: who is on call now and the next handoff."""
        schedules = self.config.schedules
        if name and name not in schedules:
            return f"No schedule named {name!r} (known: {', '.join(sorted(schedules)) or 'none'})."
        lines = [f"On call at {_fmt(at)}:"]
        for sname in ([name] if name else sorted(schedules)):
            sched = schedules[sname]
            people = who_is_on_call(sched, at)
            line = f"- {sname}: {', '.join(people) or 'nobody'}"
            upcoming = next_handoffs(sched, at, at + timedelta(days=31))
            if upcoming:
                h = upcoming[0]
                line += f" (next handoff {_fmt(h.at)} to {', '.join(h.current) or 'nobody'})"
            lines.append(line)
        return "\n".join(lines)

    @defer.inlineCallbacks
    def _answer_oncall(self, ev: dict[str, Any], arg: str) -> Any:
        at = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)
        text = self.oncall_text(arg or None, at)
        content = {"msgtype": "m.notice", "body": text, "m.relates_to": {"m.in_reply_to": {"event_id": ev["event_id"]}}}
        thread = (ev.get("content") or {}).get("m.relates_to") or {}
        if thread.get("rel_type") == "m.thread":
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread["event_id"], "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": ev["event_id"]}}
        # The txn ID is the command's event ID: a retried transaction answers once.
        yield self.bridge.client.send_event(ev["room_id"], "m.room.message", content, f"oncall-{ev['event_id']}")

    # -- handoffs -----------------------------------------------------------------------------------------------

    def _arm_handoff(self, name: str) -> None:
        if not self._running:
            return
        now = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)
        upcoming = next_handoffs(self.config.schedules[name], now, now + timedelta(days=62))
        if not upcoming:
            # Nothing changes within two months: look again in a day (config reloads need a restart anyway).
            self._handoff_calls[name] = self.reactor.callLater(86400, self._arm_handoff, name)
            return
        h = upcoming[0]
        delay = max(0.0, (h.at - now).total_seconds())
        self._handoff_calls[name] = self.reactor.callLater(delay, self._handoff_due, name, h)

    @defer.inlineCallbacks
    def _handoff_due(self, name: str, handoff: Any) -> Any:
        try:
            yield self.announce_handoff(name, handoff)
        finally:
            self._arm_handoff(name)

    @defer.inlineCallbacks
    def _catch_up_handoffs(self, name: str) -> Any:
        """Announce a handoff of the last hour that a downtime made us miss (at most once, see the store)."""
        now = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)
        missed = next_handoffs(self.config.schedules[name], now - timedelta(hours=1), now)
        if missed:
            yield self.announce_handoff(name, missed[-1])

    @defer.inlineCallbacks
    def announce_handoff(self, name: str, handoff: Any) -> Any:
        """Post "on-call handoff" for ``schedule`` into its team room, once per handoff (txn ID from its time)."""
        at_ms = int(handoff.at.timestamp() * 1000)
        done = yield self.store.run(lambda txn: txn.fetchone(
            "SELECT 1 FROM escalation_handoffs WHERE schedule = ? AND at_ts = ?", (name, at_ms)) is not None)
        if done:
            return
        room = self.settings.handoff_rooms[name]
        prev = ", ".join(handoff.previous) or "nobody"
        cur = ", ".join(handoff.current) or "nobody"
        body = f"🔁 On-call handoff for schedule {name} at {_fmt(handoff.at)}: {prev} → {cur}"
        content = {"msgtype": "m.text", "body": body,
                   "m.mentions": {"user_ids": [u for u in handoff.current if u.startswith("@")]}}
        for attempt in range(5):
            try:
                room_id = room
                if room.startswith("#"):
                    room_id = (yield self.bridge.client.join(room))["room_id"]
                yield self.bridge.client.send_event(room_id, "m.room.message", content, f"handoff-{name}-{at_ms}")
                break
            except Exception as e:  # noqa: BLE001 - any failure is retried, at most 5 times
                logger.warning("handoff message for %s failed (attempt %d): %s", name, attempt + 1, e)
                yield deferLater(self.reactor, 2 ** attempt, lambda: None)
        else:
            return
        yield self.store.run(lambda txn: EscalationStore.mark_handoff_announced(txn, name, at_ms))

    # -- /sync receipts (when the homeserver does not push ephemeral data) ---------------------------------------

    @defer.inlineCallbacks
    def _sync_loop(self) -> Any:
        """Long-poll ``/sync`` as ``sync_account`` while running: join the rooms it is invited to, apply receipts."""
        assert self.sync_client is not None
        client = self.sync_client
        since: str | None = None
        backoff = 1.0
        filt = json.dumps({"presence": {"types": []}, "account_data": {"types": []},
                           "room": {"timeline": {"limit": 0}, "state": {"types": []},
                                    "ephemeral": {"types": ["m.receipt"]}, "account_data": {"types": []}}})
        while self._running:
            params = {"timeout": "20000", "filter": filt}
            if since:
                params["since"] = since
            try:
                resp = yield client.request("GET", "/_matrix/client/v3/sync", params=params)
            except Exception as e:  # noqa: BLE001 - retried with backoff while running
                logger.warning("receipt /sync failed: %s", e)
                yield deferLater(self.reactor, backoff, lambda: None)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            since = resp.get("next_batch", since)
            for room_id in ((resp.get("rooms") or {}).get("invite") or {}):
                try:
                    yield client.join(room_id)
                except MatrixRequestError as e:
                    logger.warning("receipt account could not join %s: %s", room_id, e)
            edus = []
            for room_id, room in ((resp.get("rooms") or {}).get("join") or {}).items():
                for edu in (room.get("ephemeral") or {}).get("events") or []:
                    edus.append(dict(edu, room_id=room_id))
            yield self.on_receipts(receipts_of(edus))
            yield self.store.run(lambda txn: EscalationStore.forget_room_events(
                txn, int(self.reactor.seconds() * 1000) - ROOM_EVENT_RETENTION_MS))


class EscalationResource(Resource):
    """Site root while escalation is on: our additions, then the bridge's own resource for everything else.

    - ``PUT /_matrix/app/v1/transactions/{txnId}``: ephemeral events are read here, the rest goes on to the
      bridge (via :meth:`BridgeEscalation.on_transaction`).
    - ``GET /api/v1/schedules/{name}.ics``: iCalendar feed (bearer ``api_token``, or ``?access_token=``).
    - ``GET /metrics``: the bridge's metrics followed by the escalation metrics.
    """

    isLeaf = True

    def __init__(self, inner: Resource, escalation: BridgeEscalation) -> None:
        super().__init__()
        self.inner = inner
        self.escalation = escalation

    def render(self, request: server.Request) -> bytes | int:
        """Read ephemeral events (receipts) out of ``PUT /_matrix/app/v1/transactions/{txnId}`` before the bridge
        handles it, serve ``GET /metrics`` (bridge then escalation metrics) and ``GET /api/v1/schedules/{name}``
        (iCalendar); everything else goes to the bridge's resource.
        """
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        method = request.method.decode()
        if parts[:4] == ["_matrix", "app", "v1", "transactions"] and method == "PUT" and len(parts) == 5:
            body = request.content.read()
            request.content.seek(0)
            self.escalation.stash_ephemeral(parts[4], body)
            return self.escalation.appservice.render(request)
        if parts == ["metrics"] and method == "GET":
            inner = self.inner.render(request)
            assert isinstance(inner, bytes)
            return inner + generate_latest(REGISTRY)
        if parts[:3] == ["api", "v1", "schedules"] and len(parts) == 4 and method == "GET":
            return self._ical(request, parts[3])
        return self.inner.render(request)

    def _ical(self, request: server.Request, leaf: str) -> bytes:
        token = bearer_token(request)
        if token is None:
            values = request.args.get(b"access_token") or []
            token = values[0].decode("utf-8", "replace") if values else None
        api_token = self.escalation.bridge.config.api_token

        def err(code: int, msg: str) -> bytes:
            request.setResponseCode(code)
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"error": msg}).encode()

        if api_token is None:
            return err(403, "the API is disabled (no api_token configured)")
        if token is None:
            return err(401, "missing bearer token")
        if not hmac.compare_digest(token.encode(), api_token.encode()):
            return err(403, "invalid token")
        name = leaf[:-4] if leaf.endswith(".ics") else leaf
        schedule = self.escalation.config.schedules.get(name)
        if schedule is None:
            return err(404, f"no schedule named {name!r}")
        now = datetime.fromtimestamp(self.escalation.reactor.seconds(), timezone.utc)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
        body = to_ical(schedule, start, now + timedelta(days=self.escalation.settings.ical_days))
        request.setHeader(b"Content-Type", b"text/calendar; charset=utf-8")
        request.setHeader(b"Content-Disposition", f'inline; filename="{name}.ics"'.encode())
        return body


def attach_escalation(bridge: Any, alerts_config_path: str) -> BridgeEscalation | None:
    """Enable escalation on ``bridge`` if its config file has an ``escalation`` key; ``None`` otherwise.

    Raises:
        OSError: an unreadable file. EscalationSetupError: an invalid setting (the message names it).
    """
    settings = load_settings(alerts_config_path)
    if settings is None:
        return None
    return BridgeEscalation(bridge, settings)


__all__ = ["BridgeEscalation", "EscalationResource", "EscalationSettings", "EscalationSetupError",
           "attach_escalation", "load_settings", "receipts_of", "registration_wants_ephemeral"]
