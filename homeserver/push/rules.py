"""A user's push ruleset: server-default rules merged with the user's own, plus validation for the REST layer.

Spec: Client-Server API, "Push Notifications" -> "Push Rules" (priority of kinds, predefined rules) and
"Push Rules: API" (``/pushrules/...``). Priority, highest first:

    .m.rule.master, user override rules, default override rules,
    user content rules, default content rules, user room rules, user sender rules,
    user underride rules, default underride rules.

Storage keeps only what the user changed: their own rules, and ``enabled``/``actions`` overrides of default
rules. Everything here is pure; the store and the ``/pushrules`` servlets call it.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from homeserver.http.errors import (
    BadJsonError,
    Codes,
    InvalidParamError,
    MatrixError,
    NotFoundError,
)
from homeserver.push.default_rules import (
    DEFAULT_RULE_KINDS,
    KINDS,
    MASTER_RULE_ID,
    default_rules_for_user,
    localpart,
)
from homeserver.push.evaluator import (
    BODY_KEY,
    USER_ID,
    USER_LOCALPART,
    parse_member_count,
    strip_legacy_actions,
)

#: Condition kinds the spec defines, with the parameters each requires and their JSON types.
_CONDITION_PARAMS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "event_match": (("key", str), ("pattern", str)),
    "event_property_is": (("key", str),),
    "event_property_contains": (("key", str),),
    "contains_display_name": (),
    "room_member_count": (("is", str),),
    "sender_notification_permission": (("key", str),),
}
_MAX_SAFE_INT = 2**53 - 1


@dataclass(slots=True)
class PushRule:
    """One push rule of a user's ruleset.

    Attributes:
        kind: ``override``, ``content``, ``room``, ``sender`` or ``underride``.
        rule_id: the rule's id; server-default ids start with ``.``; a room rule's id is the room ID, a sender
            rule's the user ID.
        actions: e.g. ``["notify", {"set_tweak": "sound", "value": "default"}]``.
        conditions: override/underride only (else None).
        pattern: content only (else None).
        enabled: disabled rules never match.
        default: True for server-default rules.
    """

    kind: str
    rule_id: str
    actions: list[Any]
    conditions: list[dict[str, Any]] | None = None
    pattern: str | None = None
    enabled: bool = True
    default: bool = False
    _evaluation: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def to_client_json(self) -> dict[str, Any]:
        """The rule as ``GET /pushrules/global/{kind}/{ruleId}`` returns it (spec ``PushRule``)."""
        body: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": list(self.actions),
        }
        if self.kind in ("override", "underride"):
            body["conditions"] = list(self.conditions or [])
        elif self.kind == "content":
            body["pattern"] = self.pattern if self.pattern is not None else ""
        return body

    def evaluation_conditions(self) -> list[dict[str, Any]]:
        """The conditions the evaluator checks: explicit ones, or those a content/room/sender rule implies.

        Room and sender rules compare ``room_id``/``sender`` exactly (``event_property_is``), not as a glob.
        """
        if self.kind == "content":
            return [{"kind": "event_match", "key": BODY_KEY, "pattern": self.pattern or ""}]
        if self.kind == "room":
            return [{"kind": "event_property_is", "key": "room_id", "value": self.rule_id}]
        if self.kind == "sender":
            return [{"kind": "event_property_is", "key": "sender", "value": self.rule_id}]
        return list(self.conditions or [])

    def evaluation_rule(self) -> dict[str, Any]:
        """``{"rule_id", "kind", "actions", "conditions"}`` as :meth:`PushRuleset.evaluation_rules` lists it.

        Built once per rule and read-only: a shared default rule has one such dict for every user holding it.
        """
        if self._evaluation is None:
            self._evaluation = {
                "rule_id": self.rule_id,
                "kind": self.kind,
                "actions": self.actions,
                "conditions": self.evaluation_conditions(),
            }
        return self._evaluation


_shared_defaults: dict[str, PushRule] = {}
#: The default rules as built for one made-up user: the parts of a user-naming rule that do not name the user
#: (its actions, most of its conditions) are taken from here, so every user's copy shares them.
_default_templates: dict[str, dict[str, Any]] = {}


def _shared_default_rules() -> dict[str, PushRule]:
    """``{rule_id: PushRule}`` for the server-default rules that are the same for every user, built once.

    Which rules those are is derived, not listed: a rule that comes out the same for two different users names
    neither (``.m.rule.is_user_mention`` and the like do, and are left out). Every ruleset whose user did not
    change such a rule holds these very objects (a server with thousands of users keeps one copy of the
    defaults, not one per user), so a PushRule is never modified once built.
    """
    if not _shared_defaults:
        other = {r["rule_id"]: r for rules in default_rules_for_user("@b:b.invalid").values() for r in rules}
        for kind, rules in default_rules_for_user("@a:a.invalid").items():
            for rule in rules:
                _default_templates[rule["rule_id"]] = rule
                if other.get(rule["rule_id"]) == rule:
                    _shared_defaults[rule["rule_id"]] = PushRule(
                        kind=kind, rule_id=rule["rule_id"], actions=rule["actions"],
                        conditions=rule.get("conditions"), pattern=rule.get("pattern"), enabled=rule["enabled"],
                        default=True)
    return _shared_defaults


def _share_unchanged_parts(rule: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """``(actions, conditions)`` of one user's copy of a default rule, with every part that equals the template's
    (the actions, each condition that does not name the user) replaced by the template's own object."""
    template = _default_templates.get(rule["rule_id"])
    actions, conditions = rule["actions"], rule.get("conditions")
    if template is None:
        return actions, conditions
    if actions == template["actions"]:
        actions = template["actions"]
    shared_conditions = template.get("conditions")
    if conditions is not None and shared_conditions is not None and len(conditions) == len(shared_conditions):
        conditions = [mine if mine != theirs else theirs for mine, theirs in zip(conditions, shared_conditions)]
    return actions, conditions


@dataclass(slots=True)
class PushRuleset:
    """The merged ``global`` ruleset of one user. Build it, then read it; it is not mutated after construction.

    Args:
        user_id: the owner, e.g. ``@alice:example.com`` (some default rules depend on it).
        user_rules: the user's own rules from storage, dicts with ``kind``, ``rule_id``, ``actions``,
            ``conditions`` (override/underride) or ``pattern`` (content), optional ``enabled`` (default true)
            and optional int ``priority``. Within a kind, rules keep the list's order (most important first)
            unless they carry ``priority``: then higher ``priority`` comes first (ties keep list order).
            Rules of an unknown kind or with a ``.``-prefixed id are ignored.
        default_overrides: what the user changed on server-default rules,
            ``{rule_id: {"enabled": bool, "actions": [...]}}``, either key optional. Unknown ids are ignored
            (a default rule may have been removed from the spec).
    """

    user_id: str
    user_rules: InitVar[Iterable[Mapping[str, Any]]] = ()
    default_overrides: InitVar[Mapping[str, Mapping[str, Any]] | None] = None
    # Built by __post_init__: {kind: rules in priority order} (tuples: a cached ruleset is never changed). None
    # for a defaults-only ruleset, which keeps nothing but its user ID (see _kinds).
    _by_kind: dict[str, tuple[PushRule, ...]] | None = field(init=False, repr=False, compare=False)
    _evaluation_rules: list[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)
    #: True when the user has no rules of their own and changed no default rule: the ruleset is exactly the
    #: server defaults (PushHandler evaluates such rulesets together).
    defaults_only: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self, user_rules: Iterable[Mapping[str, Any]],
                      default_overrides: Mapping[str, Mapping[str, Any]] | None) -> None:
        # Neither argument is kept: the rules are copied into PushRules (a cached ruleset holds nothing twice).
        default_overrides = default_overrides or {}
        indexed = list(enumerate(user_rules))
        self.defaults_only = not indexed and not default_overrides
        self._by_kind = None if self.defaults_only else _merge(self.user_id, indexed, default_overrides)

    def _kinds(self) -> dict[str, tuple[PushRule, ...]]:
        """``{kind: rules in priority order}``. A defaults-only ruleset builds it on each call and does not keep
        it: a server caches one ruleset per user it pushes to, and the defaults differ between users only in the
        rules naming them (push evaluation uses :func:`user_relative_default_rule` for those); what calls this
        for such a ruleset (``/pushrules`` reads, an initial sync's ``m.push_rules``) is rare."""
        by_kind = self._by_kind
        return by_kind if by_kind is not None else _merge(self.user_id, [], {})

    def rules(self, kind: str) -> list[PushRule]:
        """The rules of ``kind`` in priority order (most important first). Raises InvalidParamError (400)."""
        check_kind(kind)
        return list(self._kinds()[kind])

    def all_rules(self) -> list[PushRule]:
        """Every rule, enabled or not, in evaluation order (override, content, room, sender, underride)."""
        by_kind = self._kinds()
        return [rule for kind in KINDS for rule in by_kind[kind]]

    def get_rule(self, kind: str, rule_id: str) -> PushRule:
        """The rule ``kind``/``rule_id``.

        Raises:
            InvalidParamError: 400 ``M_INVALID_PARAM`` for an unknown kind.
            NotFoundError: 404 ``M_NOT_FOUND`` when there is no such rule.
        """
        check_kind(kind)
        for rule in self._kinds()[kind]:
            if rule.rule_id == rule_id:
                return rule
        raise NotFoundError("The push rule was not found.")

    def user_rule_ids(self, kind: str) -> list[str]:
        """Ids of the user's own rules of ``kind`` in priority order (what ``insert_position`` works on)."""
        check_kind(kind)
        return [rule.rule_id for rule in self._kinds()[kind] if not rule.default]

    def global_json(self) -> dict[str, list[dict[str, Any]]]:
        """The ruleset as ``GET /pushrules/global/`` returns it: ``{"override": [...], ..., "underride": [...]}``."""
        by_kind = self._kinds()
        return {kind: [rule.to_client_json() for rule in by_kind[kind]] for kind in KINDS}

    def to_client_json(self) -> dict[str, Any]:
        """``{"global": {...}}`` as ``GET /pushrules/`` returns it; also the ``m.push_rules`` account data content."""
        return {"global": self.global_json()}

    def evaluation_rules(self) -> list[dict[str, Any]]:
        """The enabled rules in priority order, for :meth:`PushRuleEvaluator.run`.

        Each is ``{"rule_id", "kind", "actions", "conditions"}`` with the conditions content/room/sender rules
        imply made explicit (:meth:`PushRule.evaluation_rule`: the server-default rules every user shares are
        the same dicts in every ruleset). Computed once per ruleset, except for a defaults-only one, which keeps
        nothing (it is built on each call: push evaluation of such users goes through
        :func:`user_relative_default_rule` instead); treat the result as read-only.
        """
        rules = self._evaluation_rules
        if rules is None:
            rules = [rule.evaluation_rule() for rule in self.all_rules() if rule.enabled]
            if not self.defaults_only:
                self._evaluation_rules = rules
        return rules


#: rule_id -> (kind, actions, condition parts) for the server-default rules that name their user (see
#: user_relative_default_rule): a part is a condition dict shared by every user, or ``(template, key, whole_id)``:
#: the template condition with ``key`` holding the user's ID (whole_id True) or its localpart.
_naming_recipes: dict[str, tuple[str, list[Any], list[Any]]] = {}
_relative_rules: dict[str, dict[str, Any]] = {}
_RECIPE_USERS = ("@tocsin-recipe-a:a.invalid", "@tocsin-recipe-b:b.invalid")


def user_relative_default_rule(rule_id: str) -> dict[str, Any]:
    """The server-default rule ``rule_id`` as :meth:`PushRuleset.evaluation_rules` lists it for any user who
    changed nothing (a defaults-only ruleset), one shared dict for every such user: where the rule names its user
    (``invite_for_me``, ``is_user_mention``, ``contains_user_name``), the condition holds
    :data:`~homeserver.push.evaluator.USER_ID` or :data:`~homeserver.push.evaluator.USER_LOCALPART`, which
    :meth:`PushRuleEvaluator.match` reads as the evaluated member's own value. So push evaluation of such members
    needs nothing per member: neither a kept ruleset nor rules built per event. Actions are the shared defaults'.
    Raises KeyError for an id that is no server-default rule.
    """
    rule = _relative_rules.get(rule_id)
    if rule is not None:
        return rule
    shared = _shared_default_rules().get(rule_id)
    if shared is not None:
        rule = shared.evaluation_rule()
    else:
        if rule_id not in DEFAULT_RULE_KINDS:
            raise KeyError(rule_id)
        recipe = _naming_recipes.get(rule_id)
        if recipe is None:
            recipe = _naming_recipes[rule_id] = _naming_recipe(rule_id)
        kind, actions, parts = recipe
        conditions = [part if type(part) is dict else {**part[0], part[1]: USER_ID if part[2] else USER_LOCALPART}
                      for part in parts]
        rule = {"rule_id": rule_id, "kind": kind, "actions": actions, "conditions": conditions}
    _relative_rules[rule_id] = rule
    return rule


def _naming_recipe(rule_id: str) -> tuple[str, list[Any], list[Any]]:
    """Derive how ``rule_id`` names its user by comparing the rule as two made-up users get it: the conditions
    equal for both are shared; in each other one exactly one value differs and is the user's ID or localpart."""
    a, b = (next(r for r in PushRuleset(u).all_rules() if r.rule_id == rule_id) for u in _RECIPE_USERS)
    rule_a, rule_b = a.evaluation_rule(), b.evaluation_rule()
    parts: list[Any] = []
    for cond_a, cond_b in zip(rule_a["conditions"], rule_b["conditions"], strict=True):
        if cond_a == cond_b:
            parts.append(cond_a)
            continue
        (key,) = [k for k in cond_a if cond_a[k] != cond_b.get(k)]
        whole = cond_a[key] == _RECIPE_USERS[0] and cond_b[key] == _RECIPE_USERS[1]
        if not whole and (cond_a[key], cond_b[key]) != tuple(localpart(u) for u in _RECIPE_USERS):
            raise AssertionError(f"default rule {rule_id} names its user in an unknown way: {cond_a}")
        parts.append((cond_a, key, whole))  # {**cond_a, key: ...} keeps the keys' order
    return rule_a["kind"], rule_a["actions"], parts


def _merge(user_id: str, indexed: list[tuple[int, Mapping[str, Any]]],
           default_overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[PushRule, ...]]:
    """``{kind: rules in priority order}`` for :class:`PushRuleset`: the server defaults for ``user_id`` merged
    with the user's own rules (``(list position, row)`` pairs) and their changes to defaults (as there)."""
    own: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    indexed.sort(key=lambda pair: (-int(pair[1].get("priority", 0) or 0), pair[0]))
    for _, row in indexed:
        kind = row.get("kind")
        rule_id = row.get("rule_id")
        if kind not in own or not isinstance(rule_id, str) or rule_id.startswith("."):
            continue
        own[kind].append(
            PushRule(
                kind=kind,
                rule_id=rule_id,
                actions=list(row.get("actions") or []),
                conditions=list(row.get("conditions") or []) if kind in ("override", "underride") else None,
                pattern=row.get("pattern") if kind == "content" else None,
                enabled=bool(row.get("enabled", True)),
            )
        )

    defaults: dict[str, list[PushRule]] = {}
    shared = _shared_default_rules()
    for kind, rules in default_rules_for_user(user_id).items():
        defaults[kind] = []
        for rule in rules:
            change = default_overrides.get(rule["rule_id"]) or {}
            if not change and rule["rule_id"] in shared:
                defaults[kind].append(shared[rule["rule_id"]])
                continue
            actions, conditions = _share_unchanged_parts(rule)
            defaults[kind].append(
                PushRule(
                    kind=kind,
                    rule_id=rule["rule_id"],
                    actions=list(change["actions"]) if "actions" in change else actions,
                    conditions=conditions,
                    pattern=rule.get("pattern"),
                    enabled=bool(change["enabled"]) if "enabled" in change else rule["enabled"],
                    default=True,
                )
            )

    master = [r for r in defaults["override"] if r.rule_id == MASTER_RULE_ID]
    other_default_overrides = [r for r in defaults["override"] if r.rule_id != MASTER_RULE_ID]
    return {
        "override": (*master, *own["override"], *other_default_overrides),
        "content": (*own["content"], *defaults["content"]),
        "room": (*own["room"], *defaults["room"]),
        "sender": (*own["sender"], *defaults["sender"]),
        "underride": (*own["underride"], *defaults["underride"]),
    }


# --- validation for PUT /pushrules/global/{kind}/{ruleId} and friends -------------------------------------------


def check_kind(kind: str) -> str:
    """``kind`` if it is one of the spec's five rule kinds; else InvalidParamError (400 ``M_INVALID_PARAM``)."""
    if kind not in KINDS:
        raise InvalidParamError(f"Unknown push rule kind: {kind!r}")
    return kind


def is_default_rule_id(rule_id: str) -> bool:
    """Whether ``rule_id`` is reserved for server-default rules (it starts with ``.``)."""
    return rule_id.startswith(".")


def check_default_rule_exists(kind: str, rule_id: str) -> None:
    """For ``/enabled`` and ``/actions`` on a ``.``-prefixed id: 404 ``M_NOT_FOUND`` unless it is a default rule
    of that kind. Raises InvalidParamError (400) for an unknown kind."""
    check_kind(kind)
    if DEFAULT_RULE_KINDS.get(rule_id) != kind:
        raise NotFoundError("The push rule was not found.")


def validate_actions(actions: Any) -> list[Any]:
    """Check a rule's ``actions`` and return them with the historical ``dont_notify``/``coalesce`` removed.

    Accepted: ``"notify"``, ``"dont_notify"``, ``"coalesce"``, namespaced string actions (containing a ``.``,
    e.g. from an MSC) and ``{"set_tweak": str, "value": ...}``; a ``highlight`` tweak's value must be a boolean.

    Raises:
        BadJsonError: 400 ``M_BAD_JSON`` when ``actions`` is not a list or an item is neither string nor object.
        InvalidParamError: 400 ``M_INVALID_PARAM`` for an unknown action or a malformed tweak.
    """
    if not isinstance(actions, list):
        raise BadJsonError("'actions' must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in ("notify", "dont_notify", "coalesce") and "." not in action:
                raise InvalidParamError(f"Unrecognised push rule action: {action!r}")
        elif isinstance(action, dict):
            tweak = action.get("set_tweak")
            if not isinstance(tweak, str) or not tweak:
                raise InvalidParamError("An object action needs a non-empty string 'set_tweak'")
            if tweak == "highlight" and "value" in action and not isinstance(action["value"], bool):
                raise InvalidParamError("The 'highlight' tweak's value must be a boolean")
        else:
            raise BadJsonError("Each action must be a string or an object")
    return strip_legacy_actions(actions)


def validate_condition(condition: Any) -> dict[str, Any]:
    """Check one push condition (spec ``PushCondition``) and return it.

    Condition kinds the spec does not define are accepted (they never match, as the spec says), so clients can
    store rules for MSCs we do not implement.

    Raises:
        BadJsonError: 400 ``M_BAD_JSON`` when the condition is not an object, has no string ``kind``, or lacks a
            parameter its kind requires (or has it with the wrong JSON type).
        InvalidParamError: 400 ``M_INVALID_PARAM`` for a bad ``room_member_count`` ``is`` or a compound / out of
            range ``value``.
    """
    if not isinstance(condition, dict):
        raise BadJsonError("Each condition must be an object")
    kind = condition.get("kind")
    if not isinstance(kind, str):
        raise BadJsonError("Each condition needs a string 'kind'")
    for name, json_type in _CONDITION_PARAMS.get(kind, ()):
        if not isinstance(condition.get(name), json_type):
            raise BadJsonError(f"A '{kind}' condition needs a string '{name}'")
    if kind in ("event_property_is", "event_property_contains"):
        if "value" not in condition:
            raise BadJsonError(f"A '{kind}' condition needs a 'value'")
        value = condition["value"]
        if not (value is None or isinstance(value, (str, int))):
            raise InvalidParamError(f"A '{kind}' value must be a string, integer, boolean or null")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INT:
            raise InvalidParamError(f"A '{kind}' integer value must be within +-(2**53 - 1)")
    if kind == "room_member_count" and parse_member_count(condition["is"]) is None:
        raise InvalidParamError("'is' must be a decimal integer optionally prefixed by ==, <, >, <= or >=")
    return condition


def validate_rule(kind: str, rule_id: str, body: Any) -> dict[str, Any]:
    """Check a ``PUT /pushrules/global/{kind}/{ruleId}`` request and return the rule to store.

    Args:
        kind: the path's ``kind``.
        rule_id: the path's ``ruleId`` (already URL-decoded).
        body: the parsed JSON body: ``actions`` (required), ``conditions`` (override/underride, default ``[]``),
            ``pattern`` (content, required).

    Returns:
        ``{"kind", "rule_id", "actions", "enabled": True}`` plus ``conditions`` (override/underride) or
        ``pattern`` (content). Room and sender rules carry neither: their ``rule_id`` is the room / user ID.
        Legacy ``dont_notify``/``coalesce`` actions are removed.

    Raises:
        InvalidParamError: 400 ``M_INVALID_PARAM``: unknown kind; ``rule_id`` empty, starting with ``.``
            (reserved for server-default rules) or containing ``/`` or ``\\``; a room rule id not starting with
            ``!`` or a sender rule id not starting with ``@``; bad action or condition values.
        BadJsonError: 400 ``M_BAD_JSON``: body not an object, ``actions`` missing or not a list, ``conditions``
            not a list, ``pattern`` missing or not a string, malformed condition.
    """
    check_kind(kind)
    if not rule_id:
        raise InvalidParamError("The rule id must not be empty")
    if is_default_rule_id(rule_id):
        raise InvalidParamError("Rule ids starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise InvalidParamError("Rule ids must not contain '/' or '\\'")
    if kind == "room" and not rule_id.startswith("!"):
        raise InvalidParamError("A room rule's id must be a room ID")
    if kind == "sender" and not rule_id.startswith("@"):
        raise InvalidParamError("A sender rule's id must be a user ID")
    if not isinstance(body, dict):
        raise BadJsonError("The push rule must be a JSON object")
    if "actions" not in body:
        raise BadJsonError("Missing 'actions'")
    rule: dict[str, Any] = {
        "kind": kind,
        "rule_id": rule_id,
        "actions": validate_actions(body["actions"]),
        "enabled": True,
    }
    if kind in ("override", "underride"):
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list):
            raise BadJsonError("'conditions' must be a list")
        rule["conditions"] = [validate_condition(c) for c in conditions]
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise BadJsonError("A content rule needs a string 'pattern'")
        rule["pattern"] = pattern
    return rule


def validate_enabled_body(body: Any) -> bool:
    """The ``enabled`` of a ``PUT .../enabled`` body; BadJsonError (400 ``M_BAD_JSON``) unless a boolean."""
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise BadJsonError("The body must be {\"enabled\": true|false}")
    return body["enabled"]


def validate_actions_body(body: Any) -> list[Any]:
    """The ``actions`` of a ``PUT .../actions`` body, checked as :func:`validate_actions` does."""
    if not isinstance(body, dict) or "actions" not in body:
        raise BadJsonError("Missing 'actions'")
    return validate_actions(body["actions"])


def insert_position(
    rules: Sequence[Mapping[str, Any] | str], before: str | None = None, after: str | None = None
) -> int:
    """Where a new or moved user rule goes in the user's rules of one kind (spec: ``PUT`` ``before``/``after``).

    Args:
        rules: the user's own rules of that kind (dicts with ``rule_id``, or bare ids), most important first,
            WITHOUT the rule being put.
        before: put the rule just before (more important than) this user rule.
        after: put it just after (less important than) this user rule. When both are given, ``before`` wins as
            the spec says.

    Returns:
        The list index to insert at; 0 (most important user rule) when neither is given.

    Raises:
        InvalidParamError: 400 ``M_INVALID_PARAM`` when the anchor is a server-default rule (``.``-prefixed).
        MatrixError: 400 ``M_UNKNOWN`` "before/after rule not found: ..." (the spec's example) when the anchor
            is not among ``rules``.
    """
    anchor = before if before is not None else after
    if anchor is None:
        return 0
    if is_default_rule_id(anchor):
        raise InvalidParamError("A rule cannot be placed relative to a server-default rule")
    for index, rule in enumerate(rules):
        rule_id = rule if isinstance(rule, str) else rule.get("rule_id")
        if rule_id == anchor:
            return index if before is not None else index + 1
    raise MatrixError(400, f"before/after rule not found: {anchor}", Codes.UNKNOWN)
