"""Parse source payloads into :class:`~appservices.alerts.models.AlertGroup`.

Each parser takes the decoded JSON body and raises :class:`BadPayload` naming the first thing that is wrong,
which the HTTP layer returns as a 400 (422 for a well-formed body that has the wrong version).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .models import FIRING, RESOLVED, Alert, AlertGroup

ZERO_TIME = "0001-01-01T00:00:00Z"


class BadPayload(ValueError):
    """The body is not what the source's format requires.

    Attributes:
        reason: short machine-readable reason used as a metrics label (``missing_field``, ``bad_type``, ...).
        code: HTTP status to answer with (400 or 422).
    """

    def __init__(self, msg: str, reason: str = "invalid", code: int = 400) -> None:
        super().__init__(msg)
        self.reason = reason
        self.code = code


def _require(obj: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise BadPayload(f"missing field {where}{key}", "missing_field")
    value = obj[key]
    if not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise BadPayload(f"field {where}{key} must be of type {names}", "bad_type")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadPayload(f"field {where} must be an object", "bad_type")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, (str, int, float, bool)):
            raise BadPayload(f"field {where}.{k} must be a string", "bad_type")
        out[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return out


def _fingerprint_of(labels: dict[str, str]) -> str:
    # Sources that do not send a fingerprint get one derived from the label set, stable across notifications.
    canon = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


def _status(value: str, where: str) -> str:
    if value not in (FIRING, RESOLVED):
        raise BadPayload(f"field {where} must be 'firing' or 'resolved', not {value!r}", "bad_value")
    return value


def _http_url(value: Any) -> str:
    return value if isinstance(value, str) and re.match(r"(?i)^https?://", value) else ""


def _parse_am_alerts(body: dict[str, Any], grafana: bool) -> list[Alert]:
    raw_alerts = _require(body, "alerts", list, "")
    if not raw_alerts:
        raise BadPayload("field alerts must not be empty", "missing_field")
    alerts = []
    for i, raw in enumerate(raw_alerts):
        where = f"alerts[{i}]."
        if not isinstance(raw, dict):
            raise BadPayload(f"alerts[{i}] must be an object", "bad_type")
        status = _status(_require(raw, "status", str, where), where + "status")
        labels = _str_map(_require(raw, "labels", dict, where), where + "labels")
        annotations = _str_map(raw.get("annotations"), where + "annotations")
        fp = raw.get("fingerprint")
        if fp is not None and not isinstance(fp, str):
            raise BadPayload(f"field {where}fingerprint must be of type str", "bad_type")
        links: dict[str, str] = {}
        if grafana:
            for key, name in (("silenceURL", "silence"), ("dashboardURL", "dashboard"), ("panelURL", "panel")):
                url = _http_url(raw.get(key))
                if url:
                    links[name] = url
        values = raw.get("values") if grafana and isinstance(raw.get("values"), dict) else {}
        ends_at = raw.get("endsAt") if isinstance(raw.get("endsAt"), str) else None
        alerts.append(
            Alert(
                fingerprint=fp or _fingerprint_of(labels),
                status=status,
                labels=labels,
                annotations=annotations,
                starts_at=raw.get("startsAt") if isinstance(raw.get("startsAt"), str) else None,
                ends_at=None if ends_at == ZERO_TIME else ends_at,
                generator_url=_http_url(raw.get("generatorURL")),
                links=links,
                values={k: v for k, v in (values or {}).items() if isinstance(v, (int, float))},
            )
        )
    return alerts


def _group_status(alerts: list[Alert]) -> str:
    return FIRING if any(a.status == FIRING for a in alerts) else RESOLVED


def _title(common_labels: dict[str, str], common_annotations: dict[str, str], alerts: list[Alert]) -> str:
    first = alerts[0]
    summary = common_annotations.get("summary") or first.annotations.get("summary")
    name = common_labels.get("alertname") or first.labels.get("alertname") or "alert"
    if len(alerts) > 1:
        return f"{name}: {len(alerts)} alerts" + (f" ({summary})" if summary and "summary" in common_annotations else "")
    return summary or name


def parse_alertmanager(body: Any) -> AlertGroup:
    """Parse an Alertmanager ``webhook_config`` notification (payload ``version: "4"``).

    Required: ``version`` (= "4"), ``groupKey``, ``status``, ``alerts`` (non-empty; each with ``status`` and
    ``labels``). ``fingerprint`` is derived from the labels when absent.

    Raises:
        BadPayload: naming the missing or malformed field (422 for an unsupported version).
    """
    if not isinstance(body, dict):
        raise BadPayload("body must be a JSON object", "bad_type")
    version = _require(body, "version", str, "")
    if version != "4":
        raise BadPayload(f"unsupported webhook payload version {version!r}, expected '4'", "bad_version", 422)
    group_key = _require(body, "groupKey", str, "")
    _status(_require(body, "status", str, ""), "status")
    return _am_shaped_group(body, "alertmanager", group_key, grafana=False)


def parse_grafana(body: Any) -> AlertGroup:
    """Parse a Grafana Alerting webhook contact point body (``version: "1"``).

    Same core as Alertmanager's plus ``silenceURL``/``dashboardURL``/``panelURL`` links and ``values``.
    The deprecated ``title``/``message`` are not used: the bridge renders from the alerts.

    Raises:
        BadPayload: naming the missing or malformed field.
    """
    if not isinstance(body, dict):
        raise BadPayload("body must be a JSON object", "bad_type")
    group_key = _require(body, "groupKey", str, "")
    _status(_require(body, "status", str, ""), "status")
    org = body.get("orgId")
    return _am_shaped_group(body, "grafana", f"{org}/{group_key}" if org is not None else group_key, grafana=True)


def _am_shaped_group(body: dict[str, Any], source: str, dedup_key: str, grafana: bool) -> AlertGroup:
    """The AlertGroup of a body in Alertmanager's webhook shape (Grafana's contact point reuses it)."""
    alerts = _parse_am_alerts(body, grafana=grafana)
    common_labels = _str_map(body.get("commonLabels"), "commonLabels")
    common_annotations = _str_map(body.get("commonAnnotations"), "commonAnnotations")
    truncated = body.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or not 0 <= truncated <= 2**31:
        raise BadPayload("field truncatedAlerts must be a non-negative integer", "bad_type")
    return AlertGroup(
        source=source,
        dedup_key=dedup_key,
        status=_group_status(alerts),
        alerts=alerts,
        group_labels=_str_map(body.get("groupLabels"), "groupLabels"),
        common_labels=common_labels,
        common_annotations=common_annotations,
        title=_title(common_labels, common_annotations, alerts),
        external_url=_http_url(body.get("externalURL")),
        truncated_alerts=truncated if isinstance(truncated, int) and not isinstance(truncated, bool) else 0,
    )


ZABBIX_SEVERITIES = {
    "0": "none", "1": "info", "2": "warning", "3": "average", "4": "high", "5": "disaster",
}
_MXID = re.compile(r"^@[^:\s]+:[^\s]+$")


def _zabbix_unresolved(value: Any) -> bool:
    # Zabbix leaves a macro it cannot expand as its literal text, e.g. "{EVENT.RECOVERY.DATE}".
    return isinstance(value, str) and re.fullmatch(r"\{[A-Z0-9_.]+\}", value) is not None


def parse_zabbix(body: Any) -> AlertGroup:
    """Parse the Zabbix media-type parameter object documented in docs/alerts.md.

    Required: ``event_id``, ``event_value`` ("1" problem, "0" recovery), ``trigger_name``, ``host_name``.
    ``event_update_status`` "1" is an update (posted into the thread; an acknowledgement at Zabbix
    acknowledges the incident). The five default parameters of a new webhook media type (``Subject``,
    ``Message``, ``To``) are also accepted: the problem ID is read from ``Original problem ID: N``.

    Raises:
        BadPayload: naming the missing or malformed field.
    """
    if not isinstance(body, dict):
        raise BadPayload("body must be a JSON object", "bad_type")
    if "event_id" not in body and "Subject" in body:
        return _parse_zabbix_default_params(body)
    for key in ("event_id", "event_value", "trigger_name", "host_name"):
        _require(body, key, str, "")
    for key, value in body.items():
        if not isinstance(value, str):
            raise BadPayload(f"field {key} must be of type str (Zabbix parameters are strings)", "bad_type")
    if body["event_value"] not in ("0", "1"):
        raise BadPayload("field event_value must be '1' (problem) or '0' (recovery)", "bad_value")
    if not body["event_id"].strip():
        # It is the dedup key: every problem without one would land in the same incident.
        raise BadPayload("field event_id must not be empty", "bad_value")
    status = FIRING if body["event_value"] == "1" else RESOLVED
    labels = {
        "alertname": body["trigger_name"],
        "host": body["host_name"],
        "severity": ZABBIX_SEVERITIES.get(body.get("event_nseverity", ""), body.get("event_severity", "none").lower()),
    }
    if body.get("host_ip"):
        labels["instance"] = body["host_ip"]
    if body.get("event_tags_json"):
        try:
            tags = json.loads(body["event_tags_json"])
        except ValueError as e:
            raise BadPayload(f"field event_tags_json is not valid JSON: {e}", "bad_value") from e
        if not isinstance(tags, list):
            raise BadPayload("field event_tags_json must be a JSON list of {tag, value}", "bad_type")
        for t in tags:
            if isinstance(t, dict) and isinstance(t.get("tag"), str):
                labels.setdefault(t["tag"], str(t.get("value", "")))
    annotations = {"summary": body.get("alert_subject") or body["trigger_name"]}
    if body.get("alert_message"):
        annotations["description"] = body["alert_message"].strip()
    if body.get("event_opdata"):
        annotations["operational_data"] = body["event_opdata"]
    base = _http_url(body.get("zabbix_url"))
    link = ""
    if base and body.get("trigger_id"):
        link = f"{base.rstrip('/')}/tr_events.php?triggerid={body['trigger_id']}&eventid={body['event_id']}"
    starts = f"{body.get('event_date', '')} {body.get('event_time', '')}".strip()
    ends = None
    if status == RESOLVED and not _zabbix_unresolved(body.get("event_recovery_date")):
        ends = f"{body.get('event_recovery_date', '')} {body.get('event_recovery_time', '')}".strip() or None
    alert = Alert(
        fingerprint=f"zabbix-{body['event_id']}",
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts or None,
        ends_at=ends,
        generator_url=link,
    )
    update_note = None
    ack_by = None
    if body.get("event_update_status") == "1":
        who = body.get("event_update_user") or "someone"
        action = body.get("event_update_action") or "updated"
        update_note = f"Zabbix: {who} {action} the problem"
        if body.get("event_update_message"):
            update_note += f": {body['event_update_message']}"
        if "acknowledged" in action and "unacknowledged" not in action:
            ack_by = f"zabbix:{who}"
    sendto = body.get("alert_sendto", "")
    return AlertGroup(
        source="zabbix",
        dedup_key=body["event_id"],
        status=status,
        alerts=[alert],
        group_labels={"alertname": labels["alertname"], "host": labels["host"]},
        common_labels=labels,
        common_annotations=annotations,
        title=f"{body['trigger_name']} on {body['host_name']}",
        external_url=base,
        mentions=[sendto] if _MXID.match(sendto) else [],
        update_note=update_note,
        source_ack_by=ack_by,
    )


def _parse_zabbix_default_params(body: dict[str, Any]) -> AlertGroup:
    subject = _require(body, "Subject", str, "")
    message = _require(body, "Message", str, "")
    m = re.search(r"Original problem ID:\s*(\d+)", message)
    if not m:
        raise BadPayload(
            "missing field event_id (and no 'Original problem ID: N' line in Message); "
            "use the media type in config/zabbix_media_type.yaml",
            "missing_field",
        )
    lowered = subject.lower()
    status = RESOLVED if lowered.startswith(("resolved", "recovery", "ok")) else FIRING
    fields = dict(re.findall(r"^([A-Za-z ]+):\s*(.*)$", message, re.M))
    name = fields.get("Problem name") or subject.split(":", 1)[-1].strip()
    host = fields.get("Host", "")
    severity = fields.get("Severity", "none").lower()
    labels = {"alertname": name, "severity": severity}
    if host:
        labels["host"] = host
    annotations = {"summary": subject, "description": message.strip()}
    sendto = body.get("To", "")
    return AlertGroup(
        source="zabbix",
        dedup_key=m.group(1),
        status=status,
        alerts=[Alert(fingerprint=f"zabbix-{m.group(1)}", status=status, labels=labels, annotations=annotations)],
        group_labels={k: v for k, v in labels.items() if k in ("alertname", "host")},
        common_labels=labels,
        common_annotations=annotations,
        title=f"{name} on {host}" if host else name,
        mentions=[sendto] if isinstance(sendto, str) and _MXID.match(sendto) else [],
    )


def json_path(obj: Any, path: str) -> Any:
    """Follow a dotted path (``a.b.0.c``; list indices as integers) into decoded JSON; ``None`` if absent."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            i = int(part)
            cur = cur[i] if -len(cur) <= i < len(cur) else None
        else:
            return None
        if cur is None:
            return None
    return cur


def parse_generic(body: Any, name: str, template: dict[str, Any]) -> AlertGroup:
    """Map any JSON object to an alert group with a per-source template (see ``generic`` in the config).

    Template keys: ``dedup_key`` (path, required), ``status`` (path; value compared with ``resolved_values``,
    default ``["resolved", "ok", "OK", "0", "false"]``), ``labels`` / ``annotations`` (name -> path),
    ``url`` (path), ``title`` (path). Paths that are required must resolve.

    Raises:
        BadPayload: the body is not an object or a required path is missing.
    """
    if not isinstance(body, dict):
        raise BadPayload("body must be a JSON object", "bad_type")
    key_path = template["dedup_key"]
    key = json_path(body, key_path)
    if key is None or isinstance(key, (dict, list)):
        raise BadPayload(f"missing field {key_path} (the dedup key of source {name!r})", "missing_field")
    resolved_values = [str(v) for v in template.get("resolved_values", ["resolved", "ok", "OK", "0", "false"])]
    status = FIRING
    if template.get("status"):
        raw_status = json_path(body, template["status"])
        if raw_status is None:
            raise BadPayload(f"missing field {template['status']} (the status of source {name!r})", "missing_field")
        if str(raw_status).lower() in [v.lower() for v in resolved_values] or raw_status is False:
            status = RESOLVED
    labels: dict[str, str] = {}
    for lname, path in (template.get("labels") or {}).items():
        v = json_path(body, path)
        if v is not None:
            labels[lname] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    labels.setdefault("alertname", name)
    annotations: dict[str, str] = {}
    for aname, path in (template.get("annotations") or {}).items():
        v = json_path(body, path)
        if v is not None:
            annotations[aname] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    url = _http_url(json_path(body, template["url"])) if template.get("url") else ""
    title = json_path(body, template["title"]) if template.get("title") else None
    alert = Alert(
        fingerprint=f"{name}-{_fingerprint_of({'k': str(key)})}",
        status=status,
        labels=labels,
        annotations=annotations,
        generator_url=url,
    )
    return AlertGroup(
        source=f"generic:{name}",
        dedup_key=str(key),
        status=status,
        alerts=[alert],
        group_labels={"alertname": labels["alertname"]},
        common_labels=labels,
        common_annotations=annotations,
        title=str(title) if title is not None else (annotations.get("summary") or labels["alertname"]),
    )
