"""Push rules API, push evaluation of every new event, unread counts and ``/notifications``.

Spec: Client-Server API, "Push Notifications" (push rules and their API, ``/notifications``, "Receiving
notifications": ``unread_notifications`` / ``unread_thread_notifications`` in /sync).

Evaluation is a persist hook of the event path: :meth:`PushHandler.prepare` runs the rules of every joined member
(and an invitee) once per event with the precompiled ruleset of each user (cached, replaced when the user edits
it) and no per-member query; :meth:`PushHandler.persist_txn` writes the notifying actions (and the pushes for
pushers) in the event's own transaction. Unread counts are the actions after the user's read position (receipts
and the user's own last message); they are cached per (user, room) and kept exact by counting new actions in.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import OrderedDict
from typing import Any, Iterable

from twisted.internet import defer

from homeserver.events import Event
from homeserver.events.auth import CREATE, POWER_LEVELS, get_user_power_level
from homeserver.http.errors import InvalidParamError
from homeserver.push import (
    PushRuleEvaluator,
    PushRuleset,
    actions_to_counts,
    strip_legacy_actions,
    check_default_rule_exists,
    check_kind,
    validate_actions_body,
    validate_enabled_body,
    validate_rule,
)
from homeserver.push.rules import is_default_rule_id, user_relative_default_rule
from homeserver.storage.push import PushStore, upsert_read_position_txn

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
MAIN_THREAD = "main"
_RULESET_CACHE_SIZE = 100_000
_COUNTS_CACHE_SIZE = 200_000
_DISPLAY_NAME_CACHE_SIZE = 200_000
_ACTIONS_MEMO_SIZE = 100_000
_NO_NAME = object()
#: A user ID no event can mention, name or invite (NUL is not allowed in user IDs).
_SENTINEL_USER = "@\0:\0"
#: The default rules whose conditions depend on the member (their ID, localpart or display name).
_USER_DEPENDENT_RULES = frozenset({
    ".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
    ".m.rule.contains_user_name",
})


def thread_id_of(event: Event) -> str:
    """The thread root an event's own ``m.thread`` relation names, or ``"main"`` (the claim only: see
    :func:`thread_id_in_room`)."""
    rel = event.content.get("m.relates_to")
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return rel["event_id"]
    return MAIN_THREAD


async def thread_id_in_room(event_store: Any, event: Event) -> str:
    """The thread an event belongs to for receipts and counts: the root its ``m.thread`` relation names when that
    root is an event of the same room, else ``"main"``.

    A relation only counts within its parent's room (as for ``/threads`` and the bundled summaries): a "reply"
    naming another room's event, or an unknown one, is in no thread of its own room, so its notification counts
    in the main timeline, where a ``main`` receipt clears it.
    """
    thread_id = thread_id_of(event)
    if thread_id == MAIN_THREAD:
        return thread_id
    root = await event_store.get_event(thread_id)
    return thread_id if root is not None and root.room_id == event.room_id else MAIN_THREAD


class _Prepared:
    """What :meth:`PushHandler.prepare` found for one event."""

    __slots__ = ("thread_id", "actions", "pushes")

    def __init__(self, thread_id: str, actions: list[tuple[str, int, str]],
                 pushes: list[tuple[str, str, str, str]]) -> None:
        self.thread_id = thread_id
        self.actions = actions  # (user_id, highlight 0/1, actions_json)
        self.pushes = pushes  # (user_id, app_id, pushkey, actions_json)


class PushHandler:
    """Push rules, evaluation, unread counts and notifications. Uses ``hs.push_store``, ``hs.room_store``,
    ``hs.event_store``, ``hs.account_data_store``; ``hs.pusher_handler`` (if present) for pushers."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store: PushStore = hs.push_store
        self.room_store = hs.room_store
        self.event_store = hs.event_store
        self._rulesets: OrderedDict[str, PushRuleset] = OrderedDict()
        self._rule_locks: dict[str, defer.DeferredLock] = {}
        # Bumped by every rule edit: a ruleset read from the database before an edit is not cached after it.
        self._rules_version = 0
        self._display_names: OrderedDict[str, Any] = OrderedDict()
        # (user_id, room_id) -> [covered_stream_ordering, {thread_id: [notifications, highlights]},
        #                        {thread_id: read position set by the user's own later message}]
        self._counts: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()
        # Queries in flight per key: new actions are recorded for them so their result can be completed.
        self._counts_inflight: dict[tuple[str, str], list[list[tuple[int, str, int]]]] = {}
        self._counts_gen: dict[tuple[str, str], int] = {}
        # Actions announced (after_persist) while a lower event position was still in flight, i.e. above
        # stream_ids.current(): a fill reads only up to current(), so it takes these from here. An entry leaves once
        # current() passes it (every later fill reads it from the database). Heap of (stream_ordering, keys).
        self._counts_ahead: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
        self._counts_ahead_heap: list[tuple[int, list[tuple[str, str]]]] = []
        self._actions_memo: dict[int, tuple[list[Any], tuple[bool, int, str]]] = {}
        self._sentinel_rules = PushRuleset(_SENTINEL_USER).evaluation_rules()
        self._sentinel_positions = {rule["rule_id"]: i for i, rule in enumerate(self._sentinel_rules)}
        self._dependent_positions = sorted(
            self._sentinel_positions[r] for r in _USER_DEPENDENT_RULES if r in self._sentinel_positions)
        self._dependent_ids = [self._sentinel_rules[j]["rule_id"] for j in self._dependent_positions]
        hs.event_creation_handler.add_persist_hook(self)

    # -- rulesets ----------------------------------------------------------------------------------------------

    async def get_ruleset(self, user_id: str) -> PushRuleset:
        """The user's merged ruleset (cached until they change it)."""
        ruleset = self._rulesets.get(user_id)
        if ruleset is not None:
            self._rulesets.move_to_end(user_id)
            return ruleset
        version = self._rules_version
        rules, overrides = await self.store.get_push_rules(user_id)
        ruleset = PushRuleset(user_id, rules, overrides)
        if version == self._rules_version:
            self._remember_ruleset(user_id, ruleset)
        return ruleset

    def _remember_ruleset(self, user_id: str, ruleset: PushRuleset) -> None:
        self._rulesets[user_id] = ruleset
        if len(self._rulesets) > _RULESET_CACHE_SIZE:
            self._rulesets.popitem(last=False)

    async def get_push_rules_content(self, user_id: str) -> JsonDict:
        """``{"global": {...}}``: the body of ``GET /pushrules/`` and the ``m.push_rules`` account data content."""
        return (await self.get_ruleset(user_id)).to_client_json()

    async def add_default_push_rules_to_sync(self, user_id: str, global_account_data: dict[str, JsonDict]) -> None:
        """For an initial (or full-state) /sync: put the ``m.push_rules`` content into ``global_account_data``
        (``{type: content}``) when the user never changed a rule, so clients always see their ruleset."""
        if "m.push_rules" not in global_account_data:
            global_account_data["m.push_rules"] = await self.get_push_rules_content(user_id)

    async def _edit_rules(self, user_id: str, change: Any) -> None:
        """Run ``await change()`` (a store write), then rebuild the cached ruleset and write the whole ruleset as
        ``m.push_rules`` account data. Edits of one user are serialised so the account data ends in step."""
        lock = self._rule_locks.setdefault(user_id, defer.DeferredLock())
        await lock.acquire()
        try:
            try:
                await change()
            finally:
                self._rules_version += 1
                self._rulesets.pop(user_id, None)
            content = await self.get_push_rules_content(user_id)
            await self.hs.account_data_store.add_account_data(user_id, "", "m.push_rules", content)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._rule_locks.pop(user_id, None)

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> JsonDict:
        """``GET /pushrules/global/{kind}/{ruleId}``. Raises InvalidParamError (400) / NotFoundError (404)."""
        return (await self.get_ruleset(user_id)).get_rule(kind, rule_id).to_client_json()

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: Any, before: str | None,
                       after: str | None) -> None:
        """``PUT /pushrules/global/{kind}/{ruleId}``: validate (400 on any fault, nothing stored) and store."""
        rule = validate_rule(kind, rule_id, body)
        await self._edit_rules(user_id, lambda: self.store.put_push_rule(user_id, rule, before, after))

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """``DELETE /pushrules/global/{kind}/{ruleId}``: 400 for a server-default rule or unknown kind, 404 for an
        unknown rule."""
        check_kind(kind)
        if is_default_rule_id(rule_id):
            check_default_rule_exists(kind, rule_id)
            raise InvalidParamError("Server-default push rules cannot be deleted")
        await self._edit_rules(user_id, lambda: self.store.delete_push_rule(user_id, kind, rule_id))

    async def get_rule_attribute(self, user_id: str, kind: str, rule_id: str, attr: str) -> JsonDict:
        """``GET .../enabled`` -> ``{"enabled": bool}``, ``GET .../actions`` -> ``{"actions": [...]}``."""
        rule = (await self.get_ruleset(user_id)).get_rule(kind, rule_id)
        return {"enabled": rule.enabled} if attr == "enabled" else {"actions": list(rule.actions)}

    async def set_rule_enabled(self, user_id: str, kind: str, rule_id: str, body: Any) -> None:
        """``PUT .../enabled``. 400 for a bad body or kind, 404 for an unknown rule; nothing changes then."""
        enabled = validate_enabled_body(body)
        is_default = self._check_rule_exists(kind, rule_id)
        await self._edit_rules(
            user_id, lambda: self.store.set_push_rule_enabled(user_id, kind, rule_id, enabled, is_default))

    async def set_rule_actions(self, user_id: str, kind: str, rule_id: str, body: Any) -> None:
        """``PUT .../actions``. 400 for bad actions or kind, 404 for an unknown rule; nothing changes then."""
        actions = validate_actions_body(body)
        is_default = self._check_rule_exists(kind, rule_id)
        await self._edit_rules(
            user_id, lambda: self.store.set_push_rule_actions(user_id, kind, rule_id, actions, is_default))

    @staticmethod
    def _check_rule_exists(kind: str, rule_id: str) -> bool:
        check_kind(kind)
        if is_default_rule_id(rule_id):
            check_default_rule_exists(kind, rule_id)
            return True
        return False

    # -- evaluation (persist hook) -----------------------------------------------------------------------------

    async def _display_names_for(self, members: Iterable[str],
                                 state_ids: dict[tuple[str, str], str]) -> dict[str, str | None]:
        wanted: dict[str, str] = {}
        names: dict[str, str | None] = {}
        cache = self._display_names
        for user_id in members:
            event_id = state_ids.get(("m.room.member", user_id))
            if event_id is None:
                names[user_id] = None
                continue
            name = cache.get(event_id, _NO_NAME)
            if name is _NO_NAME:
                wanted[user_id] = event_id
            else:
                names[user_id] = name
        if wanted:
            events = await self.event_store.get_events(wanted.values())
            for user_id, event_id in wanted.items():
                ev = events.get(event_id)
                value = ev.content.get("displayname") if ev is not None else None
                name = value if isinstance(value, str) else None
                names[user_id] = name
                cache[event_id] = name
            while len(cache) > _DISPLAY_NAME_CACHE_SIZE:
                cache.popitem(last=False)
        return names

    async def _rulesets_for(self, users: Iterable[str]) -> dict[str, PushRuleset]:
        out: dict[str, PushRuleset] = {}
        missing = []
        for user_id in users:
            ruleset = self._rulesets.get(user_id)
            if ruleset is None:
                missing.append(user_id)
            else:
                out[user_id] = ruleset
        if missing:
            version = self._rules_version
            loaded = await self.store.get_push_rules_for_users(missing)
            for user_id, (rules, overrides) in loaded.items():
                ruleset = self._rulesets.get(user_id)
                if ruleset is None:
                    ruleset = PushRuleset(user_id, rules, overrides)
                    # Cache only if no edit committed while we read: it could be older than the DB now.
                    if version == self._rules_version:
                        self._remember_ruleset(user_id, ruleset)
                out[user_id] = ruleset
        return out

    def _encode_actions(self, actions: list[Any]) -> tuple[bool, int, str]:
        """``(notify, highlight 0/1, JSON)`` of a rule's actions, memoised by the list's identity (rulesets are
        immutable, so the same list always means the same actions)."""
        memo = self._actions_memo.get(id(actions))
        if memo is not None and memo[0] is actions:
            return memo[1]
        clean = strip_legacy_actions(actions)
        notify, highlight = actions_to_counts(clean)
        value = (notify, int(highlight), json.dumps(clean, separators=(",", ":")))
        if len(self._actions_memo) > _ACTIONS_MEMO_SIZE:
            self._actions_memo.clear()
        self._actions_memo[id(actions)] = (actions, value)
        return value

    async def prepare(self, event: Event, state_ids: dict[tuple[str, str], str]) -> _Prepared | None:
        """Evaluate ``event`` for every joined member except the sender (plus the invitee of an invite).

        Runs under the room's send lock with ``state_ids`` the current state before the event. Returns what
        :meth:`persist_txn` writes, or None when nobody is notified and the sender's position needs no update.
        """
        room_id = event.room_id
        sender = event.sender
        joined = await self.room_store.get_users_in_room(room_id)
        targets = [u for u in joined if u != sender]
        if event.type == "m.room.member" and event.membership == "invite" and event.state_key \
                and event.state_key != sender and event.state_key not in joined:
            targets.append(event.state_key)
        thread_id = await thread_id_in_room(self.event_store, event)
        if not targets:
            return _Prepared(thread_id, [], [])

        # The sender's level by the room version's own rules (v10: the creator is content.creator, v11: the sender
        # of m.room.create; without power levels the creator has 100).
        auth_ids = {k: state_ids[k] for k in (POWER_LEVELS, CREATE) if k in state_ids}
        auth_events = await self.event_store.get_events(auth_ids.values()) if auth_ids else {}
        auth_state = {k: auth_events[e] for k, e in auth_ids.items() if e in auth_events}
        pl_event = auth_state.get(POWER_LEVELS)
        pl_content = pl_event.content if pl_event is not None else {}
        sender_level = get_user_power_level(sender, auth_state)

        event_dict: JsonDict = {
            "type": event.type,
            "content": event.content,
            "sender": sender,
            "room_id": room_id,
        }
        if event.is_state():
            event_dict["state_key"] = event.state_key
        evaluator = PushRuleEvaluator(event_dict, len(joined), sender_level, pl_content)
        names = await self._display_names_for(targets, state_ids)
        rulesets = await self._rulesets_for(targets)
        pushers = getattr(self.hs, "pusher_handler", None)
        actions_out: list[tuple[str, int, str]] = []
        pushes: list[tuple[str, str, str, str]] = []
        # Members who never changed a rule share the default ruleset except for the rules naming them: evaluate
        # it once for a user nobody mentions, then per member only the rules naming them that come before it.
        template = evaluator.match(self._sentinel_rules, _SENTINEL_USER, None)
        cut = self._sentinel_positions[template["rule_id"]] if template is not None else len(self._sentinel_rules)
        # A defaults-only ruleset keeps no rules: the rules naming the member are the shared user-relative ones.
        dependent = [user_relative_default_rule(rule_id)
                     for j, rule_id in zip(self._dependent_positions, self._dependent_ids) if j < cut]
        template_actions = template["actions"] if template is not None else None
        for user_id in targets:
            ruleset = rulesets[user_id]
            if ruleset.defaults_only:
                rule = evaluator.match(dependent, user_id, names.get(user_id)) if dependent else None
                actions = rule["actions"] if rule is not None else template_actions
            else:
                rule = evaluator.match(ruleset.evaluation_rules(), user_id, names.get(user_id))
                actions = rule["actions"] if rule is not None else None
            if not actions:
                continue
            notify, highlight, text = self._encode_actions(actions)
            if not notify:
                continue
            actions_out.append((user_id, highlight, text))
            if pushers is not None:
                for app_id, pushkey in pushers.pusher_keys_for(user_id):
                    pushes.append((user_id, app_id, pushkey, text))
        return _Prepared(thread_id, actions_out, pushes)

    def persist_txn(self, txn: Any, event: Event, stream_ordering: int, prepared: _Prepared | None) -> None:
        """Write the actions, the sender's read position (sending resets their counts) and pending pushes."""
        if prepared is None:
            return
        room_id, event_id = event.room_id, event.event_id
        ts = event.origin_server_ts
        if prepared.actions:
            self.store.insert_push_actions_txn(
                txn, [(u, room_id, event_id, stream_ordering, prepared.thread_id, h, a, ts)
                      for u, h, a in prepared.actions])
        upsert_read_position_txn(txn, event.sender, room_id, prepared.thread_id, stream_ordering)
        if prepared.pushes:
            self.store.insert_pending_pushes_txn(
                txn, [(u, app_id, pushkey, event_id, room_id, stream_ordering, a, ts)
                      for u, app_id, pushkey, a in prepared.pushes])

    def after_persist(self, event: Event, stream_ordering: int, prepared: _Prepared | None) -> None:
        """Count the new actions into cached unread counts; hand pushes to the pusher sender."""
        if prepared is None:
            return
        room_id = event.room_id
        thread_id = prepared.thread_id
        counts = self._counts
        inflight = self._counts_inflight
        ahead = self._counts_ahead
        self._prune_counts_ahead()
        if prepared.actions:
            # This event's own position is still in flight here (mark_done follows), so it is above current():
            # a fill starting before a lower position commits must still count it.
            heapq.heappush(self._counts_ahead_heap,
                           (stream_ordering, [(user_id, room_id) for user_id, _, _ in prepared.actions]))
        for user_id, highlight, _ in prepared.actions:
            key = (user_id, room_id)
            ahead.setdefault(key, []).append((stream_ordering, thread_id, highlight))
            entry = counts.get(key)
            if entry is not None and entry[0] < stream_ordering and entry[2].get(thread_id, 0) < stream_ordering:
                per_thread = entry[1].setdefault(thread_id, [0, 0])
                per_thread[0] += 1
                per_thread[1] += highlight
            waiting = inflight.get(key)
            if waiting:
                for log in waiting:
                    log.append((stream_ordering, thread_id, highlight))
        # Sending moved the sender's read position of this thread to the event: that thread's count is now 0
        # (every action of the room up to here was counted into a cached entry). Other threads keep theirs, so
        # the cached entry is kept rather than re-read; an in-flight read for the sender is still discarded.
        sender_key = (event.sender, room_id)
        sender_entry = counts.get(sender_key)
        self.invalidate_counts(event.sender, room_id, thread_id, stream_ordering)
        if sender_entry is not None and thread_id:
            sender_entry[1].pop(thread_id, None)
            # A lower event of this thread committing later is already read by the new position.
            sender_entry[2][thread_id] = max(sender_entry[2].get(thread_id, 0), stream_ordering)
            counts[sender_key] = sender_entry
        if prepared.pushes:
            pushers = getattr(self.hs, "pusher_handler", None)
            if pushers is not None:
                pushers.on_new_pushes({(u, app_id, pushkey) for u, app_id, pushkey, _ in prepared.pushes})

    # -- unread counts -------------------------------------------------------------------------------------------

    def invalidate_counts(self, user_id: str, room_id: str, thread_id: str | None = None,
                          read_upto: int | None = None) -> None:
        """Forget cached counts after the user's read position moved (receipt or own message); call after the
        change committed.

        ``thread_id`` (``""``: every thread, as an unthreaded receipt; ``"main"`` or a thread root) and
        ``read_upto`` (the new read position, an event stream ordering) say what is now read, so actions
        announced ahead of ``current()`` at or below it are not counted by a later fill.
        """
        key = (user_id, room_id)
        self._counts.pop(key, None)
        self._counts_gen[key] = self._counts_gen.get(key, 0) + 1
        ahead = self._counts_ahead.get(key)
        if ahead and read_upto is not None and thread_id is not None:
            kept = [a for a in ahead if a[0] > read_upto or (thread_id and a[1] != thread_id)]
            if kept:
                self._counts_ahead[key] = kept
            else:
                del self._counts_ahead[key]

    def _prune_counts_ahead(self) -> None:
        """Drop announced actions at or below ``current()``: a fill starting now reads them from the database."""
        heap = self._counts_ahead_heap
        if not heap:
            return
        current = self.event_store.stream_ids.current()
        keys: set[tuple[str, str]] = set()
        while heap and heap[0][0] <= current:
            keys.update(heapq.heappop(heap)[1])
        for key in keys:
            kept = [a for a in self._counts_ahead.get(key, ()) if a[0] > current]
            if kept:
                self._counts_ahead[key] = kept
            else:
                self._counts_ahead.pop(key, None)

    async def _thread_counts(self, user_id: str, room_id: str) -> dict[str, list[int]]:
        key = (user_id, room_id)
        entry = self._counts.get(key)
        if entry is not None:
            self._counts.move_to_end(key)
            return entry[1]
        gen = self._counts_gen.get(key, 0)
        self._prune_counts_ahead()
        upto = self.event_store.stream_ids.current()
        # Announced before this fill but above its bound (committed out of order): not in the query's rows and not
        # in the in-flight log, which only sees announcements from now on.
        log: list[tuple[int, str, int]] = [a for a in self._counts_ahead.get(key, ()) if a[0] > upto]
        self._counts_inflight.setdefault(key, []).append(log)
        try:
            rows = await self.store.get_unread_counts(user_id, room_id, upto)
        finally:
            waiting = self._counts_inflight.get(key)
            if waiting is not None:
                waiting.remove(log)
                if not waiting:
                    del self._counts_inflight[key]
        per_thread = {t: [n, h] for t, (n, h) in rows.items()}
        # Actions persisted after `upto` were not in the query; count those announced before (above the bound)
        # or while it ran, each position once.
        seen: set[int] = set()
        for so, thread_id, highlight in log:
            if so > upto and so not in seen:
                seen.add(so)
                counts = per_thread.setdefault(thread_id, [0, 0])
                counts[0] += 1
                counts[1] += highlight
        if self._counts_gen.get(key, 0) == gen and key not in self._counts:
            self._counts[key] = [upto, per_thread, {}]
            if len(self._counts) > _COUNTS_CACHE_SIZE:
                self._counts.popitem(last=False)
        return per_thread

    async def get_unread_counts(self, user_id: str, room_id: str, unread_thread_notifications: bool) -> JsonDict:
        """The room's counts for /sync.

        Returns ``{"unread_notifications": {"notification_count": int, "highlight_count": int}}``; with
        ``unread_thread_notifications`` the main timeline's counts there plus
        ``"unread_thread_notifications": {thread_root_event_id: {...}}`` for threads with unread notifications.
        """
        per_thread = await self._thread_counts(user_id, room_id)
        if not unread_thread_notifications:
            n = sum(c[0] for c in per_thread.values())
            h = sum(c[1] for c in per_thread.values())
            return {"unread_notifications": {"notification_count": n, "highlight_count": h}}
        main = per_thread.get(MAIN_THREAD, [0, 0])
        threads = {t: {"notification_count": c[0], "highlight_count": c[1]}
                   for t, c in per_thread.items() if t != MAIN_THREAD and (c[0] or c[1])}
        return {
            "unread_notifications": {"notification_count": main[0], "highlight_count": main[1]},
            "unread_thread_notifications": threads,
        }

    async def get_badge_count(self, user_id: str) -> int:
        """Unread notifications over every joined room (the push gateway's ``counts.unread``)."""
        rooms = await self.room_store.get_rooms_for_user(user_id)
        return await self.store.get_total_unread(user_id, rooms)

    # -- GET /notifications ------------------------------------------------------------------------------------

    async def get_notifications(self, requester: Any, before: int | None, limit: int,
                                only: str | None) -> JsonDict:
        """``GET /notifications``: ``{"notifications": [...], "next_token"?: str}``, newest first.

        ``before`` is the ``from`` of the request: a ``next_token`` of an earlier page (a stream ordering, the
        servlet parses it), None for the newest; ``only`` ``"highlight"`` keeps highlights.
        """
        rows = await self.store.get_notifications(requester.user_id, before, limit, only == "highlight")
        events = await self.event_store.get_events([r[0] for r in rows])
        visible = await self.hs.visibility_handler.filter_events_for_user(
            requester.user_id, [events[r[0]] for r in rows if r[0] in events])
        by_id = {e.event_id: e for e in visible}
        serialized = await self.hs.event_serializer.serialize(visible, requester, include_room_id=True)
        ser_by_id = {e["event_id"]: e for e in serialized}
        notifications = []
        for event_id, room_id, _so, actions, ts, read in rows:
            if event_id not in by_id:
                continue
            notifications.append({
                "actions": actions,
                "event": ser_by_id[event_id],
                "read": read,
                "room_id": room_id,
                "ts": ts,
            })
        body: JsonDict = {"notifications": notifications}
        if len(rows) == limit and rows:
            body["next_token"] = str(rows[-1][2])
        return body

