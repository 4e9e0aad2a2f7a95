"""Push rules: the spec's default rules, a user's merged ruleset, and fast evaluation against events.

Spec: Client-Server API, "Push Notifications". Pure code (no I/O): storage, the ``/pushrules`` servlets and the
notification counts in ``/sync`` call it.
"""

from homeserver.push.default_rules import (
    DEFAULT_RULE_KINDS,
    KINDS,
    LEGACY_MENTION_RULE_IDS,
    MASTER_RULE_ID,
    default_rules_for_user,
)
from homeserver.push.evaluator import (
    PushRuleEvaluator,
    actions_to_counts,
    actions_to_tweaks,
    strip_legacy_actions,
)
from homeserver.push.rules import (
    PushRule,
    PushRuleset,
    check_default_rule_exists,
    check_kind,
    insert_position,
    validate_actions,
    validate_actions_body,
    validate_condition,
    validate_enabled_body,
    validate_rule,
)

__all__ = [
    "DEFAULT_RULE_KINDS",
    "KINDS",
    "LEGACY_MENTION_RULE_IDS",
    "MASTER_RULE_ID",
    "PushRule",
    "PushRuleEvaluator",
    "PushRuleset",
    "actions_to_counts",
    "actions_to_tweaks",
    "check_default_rule_exists",
    "check_kind",
    "default_rules_for_user",
    "insert_position",
    "strip_legacy_actions",
    "validate_actions",
    "validate_actions_body",
    "validate_condition",
    "validate_enabled_body",
    "validate_rule",
]
