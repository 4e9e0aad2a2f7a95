"""``/pushrules/...``: read and change the user's push rules.

Spec: Client-Server API, "Push Rules: API". Only the ``global`` scope exists. Rules live in
:mod:`homeserver.handlers.push`; validation in :mod:`homeserver.push.rules`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import InvalidParamError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object, parse_json_value, parse_string
from homeserver.push import check_kind

JsonDict = dict[str, Any]
_RULES = CLIENT_PREFIX + "/pushrules"


def _check_scope(scope: str) -> None:
    if scope != "global":
        raise InvalidParamError(f"Unknown push rule scope {scope!r}: only 'global' exists")


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /pushrules/[{scope}/[{kind}/]]`` and ``GET|PUT|DELETE /pushrules/{scope}/{kind}/{ruleId}``
    with its ``/enabled`` and ``/actions`` attributes on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Push Rules: API".
    """
    handler = hs.push_handler

    async def get_all(request: Any) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.get_push_rules_content(requester.user_id)

    async def get_scope(request: Any, scope: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        return 200, (await handler.get_ruleset(requester.user_id)).global_json()

    async def get_kind(request: Any, scope: str, kind: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        ruleset = await handler.get_ruleset(requester.user_id)
        return 200, [rule.to_client_json() for rule in ruleset.rules(kind)]

    async def get_rule(request: Any, scope: str, kind: str, rule_id: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        return 200, await handler.get_rule(requester.user_id, kind, rule_id)

    async def put_rule(request: Any, scope: str, kind: str, rule_id: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        check_kind(kind)
        body = parse_json_value(request)
        before = parse_string(request, "before")
        after = parse_string(request, "after")
        await handler.put_rule(requester.user_id, kind, rule_id, body, before, after)
        return 200, {}

    async def delete_rule(request: Any, scope: str, kind: str, rule_id: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        await handler.delete_rule(requester.user_id, kind, rule_id)
        return 200, {}

    async def get_attr(request: Any, scope: str, kind: str, rule_id: str, attr: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        return 200, await handler.get_rule_attribute(requester.user_id, kind, rule_id, attr)

    async def put_attr(request: Any, scope: str, kind: str, rule_id: str, attr: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        _check_scope(scope)
        body = parse_json_object(request)
        if attr == "enabled":
            await handler.set_rule_enabled(requester.user_id, kind, rule_id, body)
        else:
            await handler.set_rule_actions(requester.user_id, kind, rule_id, body)
        return 200, {}

    router.register("GET", _RULES + "/?", get_all, "pushrules")
    router.register("GET", _RULES + rf"/(?P<scope>{PARAM})/?", get_scope, "pushrules_scope")
    router.register("GET", _RULES + rf"/(?P<scope>{PARAM})/(?P<kind>{PARAM})/?", get_kind, "pushrules_kind")
    rule = _RULES + rf"/(?P<scope>{PARAM})/(?P<kind>{PARAM})/(?P<rule_id>{PARAM})"
    router.register("GET", rule, get_rule, "pushrule")
    router.register("PUT", rule, put_rule, "pushrule")
    router.register("DELETE", rule, delete_rule, "pushrule")
    router.register("GET", rule + "/(?P<attr>enabled|actions)", get_attr, "pushrule_attr")
    router.register("PUT", rule + "/(?P<attr>enabled|actions)", put_attr, "pushrule_attr")
