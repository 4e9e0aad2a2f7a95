"""``/sync``: everything that changed for a user between a ``since`` token and now, or all of it.

Spec: Client-Server API "Syncing" (``GET /sync``). One engine builds every response: it reads each stream between
``since`` and a ``now`` token taken once at the start, so nothing is delivered twice and nothing falls between one
``next_batch`` and the next ``since``. Long-polling waits on the notifier with the same ``now`` token, so an event
that lands while a response is being built wakes the waiter at once. The same engine is meant to back sliding sync
and streaming transports later.

Area data comes from optional components when the homeserver has them: ``account_data_store``
(account data), ``e2e_keys_handler`` (to-device, device lists, key counts), ``receipts_handler`` (receipts),
``push_handler`` (unread counts), ``presence_handler``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import task

from homeserver.events import Event
from homeserver.handlers.filtering import Filter
from homeserver.http.auth import Requester
from homeserver.http.server import encode_json
from homeserver.storage.rooms import membership_at
from homeserver.streams import StreamToken

logger = logging.getLogger(__name__)

STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias",
    "m.room.encryption", "m.room.topic",
)


@dataclass
class SyncConfig:
    """One /sync request: who, which filter, from where, and whether to send full state."""

    requester: Requester
    filter: Filter
    since: StreamToken | None
    full_state: bool = False


# How often a long-poll woken by a change beyond the readable position looks again (s).
_UNREADABLE_POLL_S = 0.005


class SyncHandler:
    """Builds ``/sync`` responses and long-polls for them (see the module docstring). Spec: Client-Server API
    "Syncing".
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.room_store = hs.room_store
        self.event_store = hs.event_store
        self.notifier = hs.notifier
        self.visibility = hs.visibility_handler
        self.serializer = hs.event_serializer
        self.typing = hs.typing_handler

    async def wait_for_sync(self, config: SyncConfig, timeout_ms: int) -> dict[str, Any]:
        """Build the response; if there is nothing new since ``config.since``, wait up to ``timeout_ms`` (ms) for
        something to arrive, then return (an empty response with a fresh ``next_batch`` at the timeout)."""
        user_id = config.requester.user_id
        deadline = self.hs.clock.seconds() + max(0, timeout_ms) / 1000
        since = config.since
        if (since is not None and not config.full_state and timeout_ms > 0 and self.notifier.knows_changes_since(since)
                and not since.is_after(self.hs.stream_positions.current_token())):
            # The usual long-poll: the client comes back with the token of its last answer. If nothing for this
            # user or their rooms was announced since, building now would only find that out: wait first.
            rooms = await self.room_store.get_rooms_for_user(user_id)
            if not self.notifier.has_changed([user_id, *rooms], since):
                await self.notifier.wait_for_change(user_id, rooms, since, timeout_ms)
        while True:
            now = self.hs.stream_positions.current_token()
            if config.since is not None and config.since.is_after(now):
                # A position this server never reached (a database restored from backup, a forged token): start
                # the client again from what exists rather than skip everything up to its imaginary position.
                config = replace(config, since=config.since.min(now))
            result = await self.build(config, now)
            remaining_ms = int((deadline - self.hs.clock.seconds()) * 1000)
            if config.since is None or config.full_state or _has_data(result) or remaining_ms <= 0:
                return result
            rooms = await self.room_store.get_rooms_for_user(user_id)
            # The empty answer is needed again only if the wait times out with nothing new: while waiting it is
            # kept encoded (a few hundred bytes instead of a few KiB of dicts and lists per held connection).
            kept = encode_json(result)
            del result
            woken = await self.notifier.wait_for_change(user_id, rooms, now, remaining_ms)
            if not woken:
                now2 = self.hs.stream_positions.current_token()
                if not now2.is_after(now):
                    return json.loads(kept)
            elif not await self._wait_until_readable(now, deadline):
                return json.loads(kept)

    async def _wait_until_readable(self, now: StreamToken, deadline: float) -> bool:
        """After a wake-up, wait until the sync token moves past ``now``; False if ``deadline`` (clock seconds)
        comes first.

        Positions are allocated in order but may commit out of order: the notifier can announce a change at a
        position the token cannot reach yet, because a lower one is still in flight. Rebuilding before the token
        moves would find nothing, be woken by the same announcement and rebuild again; with every read served
        from cache that loop would never yield to the reactor, so the in-flight write could not finish. Polls
        every ``_UNREADABLE_POLL_S`` seconds instead (such windows last a transaction's commit).
        """
        while not self.hs.stream_positions.current_token().is_after(now):
            if self.hs.clock.seconds() >= deadline:
                return False
            await task.deferLater(self.hs.clock, _UNREADABLE_POLL_S, lambda: None)
        return True

    async def build(self, config: SyncConfig, now: StreamToken) -> dict[str, Any]:
        """One ``/sync`` response body (``next_batch``, ``rooms``, ``account_data``, ``to_device``, ``device_lists``,
        ``presence``...) with everything between ``config.since`` (None: initial sync) and ``now``, without
        waiting. ``next_batch`` is ``now``'s string.
        """
        requester = config.requester
        user_id = requester.user_id
        since = None if config.full_state and config.since is None else config.since
        flt = config.filter

        global_ad: dict[str, Any] = {}
        room_ad: dict[str, dict[str, Any]] = {}
        ad_store = getattr(self.hs, "account_data_store", None)
        if ad_store is not None:
            from_pos = 0 if (since is None or config.full_state) else since.account_data
            if since is None or config.full_state or now.account_data > since.account_data:
                global_ad, room_ad = await ad_store.get_updated_account_data(user_id, from_pos, now.account_data)
        push = getattr(self.hs, "push_handler", None)
        if push is not None and (since is None or config.full_state):
            # A user who never changed a rule has no m.push_rules account data yet: clients need the defaults.
            await push.add_default_push_rules_to_sync(user_id, global_ad)

        ignored_content = global_ad.get("m.ignored_user_list")
        if isinstance(ignored_content, dict) and isinstance(ignored_content.get("ignored_users"), dict):
            ignored = set(ignored_content["ignored_users"])
        else:
            ignored = await self.visibility.get_ignored_users(user_id)

        memberships = await self.room_store.get_rooms_with_membership(
            user_id, ("join", "invite", "leave", "ban", "knock"))
        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        newly_joined: set[str] = set()
        newly_left: set[str] = set()
        joined_now: set[str] = set()

        for room_id, membership, event_id, pos in memberships:
            if not flt.is_room_included(room_id):
                continue
            if pos > now.events:
                history = await self.room_store.get_membership_history(room_id, user_id)
                membership = membership_at(history, now.events + 1) or "leave"
                member_ids = [p for p, _ in history if p <= now.events]
                if not member_ids:
                    continue
                pos = member_ids[-1]
            if membership == "join":
                joined_now.add(room_id)
            changed_in_range = since is None or pos > since.events
            was_joined_before = False
            if since is not None and changed_in_range:
                history = await self.room_store.get_membership_history(room_id, user_id)
                was_joined_before = membership_at(history, since.events + 1) == "join"
            if membership == "join":
                is_new = since is not None and changed_in_range and not was_joined_before
                if is_new:
                    newly_joined.add(room_id)
                room = await self._joined_room(requester, room_id, since, now, flt, config.full_state, is_new,
                                               room_ad.get(room_id), ignored)
                if room is not None:
                    join[room_id] = room
            elif membership == "invite":
                if changed_in_range or config.full_state:
                    inviter_event = await self.event_store.get_event(event_id)
                    if inviter_event is not None and inviter_event.sender in ignored:
                        continue
                    invite[room_id] = {"invite_state": {"events": await self._stripped_state(room_id, event_id)}}
            elif membership == "knock":
                if changed_in_range or config.full_state:
                    knock[room_id] = {"knock_state": {"events": await self._stripped_state(room_id, event_id)}}
            elif membership in ("leave", "ban"):
                if since is not None and was_joined_before:
                    newly_left.add(room_id)
                include = (since is None and flt.include_leave) or (since is not None and changed_in_range)
                if include:
                    left = await self._left_room(requester, room_id, since, pos, now, flt, room_ad.get(room_id),
                                                 ignored)
                    if left is not None:
                        leave[room_id] = left

        response: dict[str, Any] = {
            "next_batch": now.to_string(),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
            "account_data": {"events": flt.filter_account_data(
                [{"type": t, "content": c} for t, c in global_ad.items()])},
            "presence": {"events": []},
        }
        presence = getattr(self.hs, "presence_handler", None)
        if presence is not None:
            response["presence"] = {"events": flt.filter_presence(
                await presence.get_sync_presence(user_id, since, now, newly_joined))}
        e2e = getattr(self.hs, "e2e_keys_handler", None)
        if e2e is not None:
            parts = await e2e.get_sync_e2e(user_id, requester.device_id, since, now, joined_now, newly_joined,
                                           newly_left)
            # To-device batches are capped: the next since must resume where this batch stopped. The capped batch
            # is non-empty, so wait_for_sync returns it at once and never long-polls while messages remain.
            to_device_upto = parts.pop("_to_device_upto", None)
            if to_device_upto is not None:
                response["next_batch"] = now.copy_and_replace("to_device", to_device_upto).to_string()
            response.update(parts)
        return response

    # -- rooms -------------------------------------------------------------------------------------------------

    async def _timeline(self, requester: Requester, room_id: str, lower: int, upper: int, flt: Filter,
                        ignored: set[str]) -> tuple[list[Event], bool]:
        """Up to ``room_timeline_limit`` visible events with ``lower < pos <= upper``, oldest first, and
        whether older ones in that range were left out (``limited``)."""
        limit = flt.room_timeline_limit
        if limit <= 0:
            has_any = self.room_store.get_room_last_stream(room_id) > lower
            return [], has_any
        collected: list[Event] = []
        limited = False
        cursor = upper
        batch = limit + 1
        for _ in range(20):
            raw = await self.event_store.get_room_events(room_id, lower, cursor, batch, "b")
            if not raw:
                break
            kept = flt.filter_room_timeline(raw)
            kept = self.visibility.drop_ignored(kept, ignored)
            kept = await self.visibility.filter_events_for_user(requester.user_id, kept)
            collected.extend(kept)
            if len(collected) > limit:
                limited = True
                break
            if len(raw) < batch:
                break
            cursor = raw[-1].internal_metadata["stream_ordering"] - 1
            batch = min(batch * 2, 500)
        else:
            limited = True
        collected = collected[:limit]
        collected.reverse()
        return collected, limited

    async def _joined_room(self, requester: Requester, room_id: str, since: StreamToken | None, now: StreamToken,
                           flt: Filter, full_state: bool, newly_joined: bool, account_data: dict[str, Any] | None,
                           ignored: set[str]) -> dict[str, Any] | None:
        user_id = requester.user_id
        last = self.room_store.get_room_last_stream(room_id)
        has_events = since is None or newly_joined or last > since.events
        typing_changed = self.typing.changed_since(room_id, since.typing if since else 0)
        receipts = getattr(self.hs, "receipts_handler", None)
        receipt_event = None
        # A room the user just joined is sent as in an initial sync: its recent history (as far as history
        # visibility allows) and its receipts, not only what happened after the join.
        room_since = None if newly_joined else since
        if receipts is not None:
            receipt_event = await receipts.get_sync_receipts(user_id, room_id, room_since, now)
        if not (has_events or full_state or typing_changed or receipt_event or account_data):
            return None
        lower = room_since.events if room_since is not None else 0
        timeline: list[Event] = []
        limited = False
        if has_events or full_state:
            timeline, limited = await self._timeline(requester, room_id, lower, now.events, flt, ignored)
        timeline_start = (timeline[0].internal_metadata["stream_ordering"] - 1) if timeline else now.events
        if since is None or newly_joined or full_state:
            state_map = await self.room_store.get_state_at(room_id, timeline_start)
            state_events = list(state_map.values())
        elif limited:
            before = await self.room_store.get_state_ids_at(room_id, since.events)
            at_start = await self.room_store.get_state_ids_at(room_id, timeline_start)
            changed_ids = [eid for key, eid in at_start.items() if before.get(key) != eid]
            state_events = list((await self.event_store.get_events(changed_ids)).values())
        else:
            state_events = []
        if (room_since is None or full_state or limited
                or await self.room_store.get_last_state_stream(room_id) > room_since.events):
            summary = await self._summary(room_id, user_id)
        else:
            # No state event in the range: member counts and heroes are unchanged since the last sync, and the
            # spec lets them be omitted then (most incremental syncs: only messages arrived).
            summary = {}
        if flt.lazy_load_members:
            senders = {e.sender for e in timeline} | {user_id}
            if since is None or newly_joined or full_state or limited:
                # The spec requires the heroes' membership with lazy-loading: without it a client names an
                # unnamed room after raw user IDs (Element shows "@carol:server").
                senders |= set(summary.get("m.heroes", []))
            in_timeline = {e.event_id for e in timeline}
            state_events = [e for e in state_events if e.type != "m.room.member" or e.state_key in senders]
            have = {e.state_key for e in state_events if e.type == "m.room.member"}
            missing = [("m.room.member", s) for s in senders if s not in have]
            if missing and (since is None or newly_joined or full_state or limited or timeline):
                member_ids = await self.room_store.get_state_ids_at(room_id, timeline_start)
                extra_ids = [member_ids[k] for k in missing if k in member_ids]
                extra = await self.event_store.get_events(extra_ids)
                state_events.extend(e for e in extra.values() if e.event_id not in in_timeline)
        state_events = flt.filter_room_state(state_events)
        state_events.sort(key=lambda e: e.internal_metadata.get("stream_ordering", 0))
        ser = self.serializer.serialize
        fmt = flt.event_format
        fields = flt.event_fields
        # A federation-format event is the PDU: without room_id its hashes and signatures could not be checked.
        with_room_id = fmt == "federation"
        ephemeral: list[dict[str, Any]] = []
        if typing_changed or (since is None and self.typing.typing_users(room_id)):
            ephemeral.append(self.typing.get_typing_event(room_id))
        if receipt_event:
            ephemeral.append(receipt_event)
        room: dict[str, Any] = {
            "timeline": {
                "events": await ser(timeline, requester, include_room_id=with_room_id, event_format=fmt,
                                    event_fields=fields),
                "limited": limited,
                "prev_batch": now.copy_and_replace("events", timeline_start).to_string(),
            },
            "state": {"events": await ser(state_events, requester, include_room_id=with_room_id, event_format=fmt,
                                          event_fields=fields, bundle_relations=False)},
            "ephemeral": {"events": flt.filter_room_ephemeral(ephemeral, room_id)},
            "account_data": {"events": flt.filter_room_account_data(
                [{"type": t, "content": c} for t, c in (account_data or {}).items()], room_id)},
            "summary": summary,
        }
        push = getattr(self.hs, "push_handler", None)
        if push is not None:
            counts = await push.get_unread_counts(user_id, room_id, flt.unread_thread_notifications)
            room.update(counts)
        else:
            room["unread_notifications"] = {"notification_count": 0, "highlight_count": 0}
        return room

    async def _left_room(self, requester: Requester, room_id: str, since: StreamToken | None, leave_pos: int,
                         now: StreamToken, flt: Filter, account_data: dict[str, Any] | None,
                         ignored: set[str]) -> dict[str, Any]:
        lower = since.events if since is not None else 0
        timeline, limited = await self._timeline(requester, room_id, lower, leave_pos, flt, ignored)
        timeline_start = (timeline[0].internal_metadata["stream_ordering"] - 1) if timeline else leave_pos
        if since is None or limited:
            state_map = await self.room_store.get_state_at(room_id, timeline_start)
            state_events = flt.filter_room_state(list(state_map.values()))
        else:
            state_events = []
        ser = self.serializer.serialize
        return {
            "timeline": {"events": await ser(timeline, requester, include_room_id=False), "limited": limited,
                         "prev_batch": now.copy_and_replace("events", timeline_start).to_string()},
            "state": {"events": await ser(state_events, requester, include_room_id=False, bundle_relations=False)},
            "account_data": {"events": [{"type": t, "content": c} for t, c in (account_data or {}).items()]},
        }

    async def _summary(self, room_id: str, user_id: str) -> dict[str, Any]:
        joined = await self.room_store.get_users_in_room(room_id)
        invited = await self.room_store.get_invited_users(room_id)
        summary: dict[str, Any] = {"m.joined_member_count": len(joined), "m.invited_member_count": len(invited)}
        state = await self.room_store.get_current_state_ids(room_id)
        if ("m.room.name", "") in state or ("m.room.canonical_alias", "") in state:
            name_event = await self.room_store.get_current_state_event(room_id, "m.room.name", "")
            alias_event = await self.room_store.get_current_state_event(room_id, "m.room.canonical_alias", "")
            if (name_event and name_event.content.get("name")) or (alias_event and alias_event.content.get("alias")):
                summary["m.heroes"] = []
                return summary
        heroes = sorted(u for u in (joined | invited) if u != user_id)[:5]
        if not heroes:
            members = await self.room_store.get_member_ids(room_id)
            heroes = sorted(u for u in members if u != user_id)[:5]
        summary["m.heroes"] = heroes
        return summary

    async def _stripped_state(self, room_id: str, membership_event_id: str) -> list[dict[str, Any]]:
        state = await self.room_store.get_current_state(room_id, [(t, "") for t in STRIPPED_STATE_TYPES])
        out = [{"type": e.type, "state_key": e.state_key, "content": e.content, "sender": e.sender}
               for e in state.values()]
        member = await self.event_store.get_event(membership_event_id)
        if member is not None:
            inviter = await self.room_store.get_current_state_event(room_id, "m.room.member", member.sender)
            if inviter is not None and inviter.event_id != member.event_id:
                out.append({"type": inviter.type, "state_key": inviter.state_key, "content": inviter.content,
                            "sender": inviter.sender})
            member_json = (await self.serializer.serialize([member], None, bundle_relations=False))[0]
            out.append(member_json)
        return out


def _has_data(result: dict[str, Any]) -> bool:
    rooms = result["rooms"]
    if rooms["join"] or rooms["invite"] or rooms["leave"] or rooms["knock"]:
        return True
    if result["account_data"]["events"] or result["presence"]["events"]:
        return True
    if result.get("to_device", {}).get("events"):
        return True
    device_lists = result.get("device_lists", {})
    return bool(device_lists.get("changed") or device_lists.get("left"))
