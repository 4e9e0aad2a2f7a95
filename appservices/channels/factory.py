"""Build the configured channels from the ``channels`` section of ``escalation.yaml``."""

from __future__ import annotations

from typing import Any, Mapping

from appservices.channels.base import AttemptRecorder, Channel
from appservices.channels.email import EmailChannel
from appservices.channels.matrix import MatrixMentionChannel, SendMessage
from appservices.channels.twilio import SmsChannel, VoiceChannel
from appservices.channels.webhook import WebhookChannel
from appservices.escalation.policy import PolicyError


def _get(section: Mapping[str, Any], key: str, prefix: str, kind: type | tuple[type, ...] = str,
         default: Any = ...) -> Any:
    if key not in section:
        if default is ...:
            raise PolicyError(f"{prefix}.{key}: required")
        return default
    value = section[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise PolicyError(f"{prefix}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def build_channels(config: Mapping[str, Any], reactor: Any, recorder: AttemptRecorder | None,
                   send_message: SendMessage | None = None) -> tuple[dict[str, Channel], Channel | None]:
    """Return ``({name: channel}, webhook_channel)`` for the sections present in ``config``.

    ``matrix`` is built when ``send_message`` is given (the AS's room-send function). Raises PolicyError naming
    the key for a bad setting.
    """
    channels: dict[str, Channel] = {}
    retry = config.get("retry") or {}
    attempts = _get(retry, "max_attempts", "channels.retry", int, 3)
    backoff = float(_get(retry, "backoff_seconds", "channels.retry", (int, float), 2.0))
    if send_message is not None:
        channels["matrix"] = MatrixMentionChannel(reactor, send_message, recorder, attempts, backoff)
    if "email" in config:
        e, p = config["email"], "channels.email"
        channels["email"] = EmailChannel(
            reactor, _get(e, "host", p), _get(e, "from", p), port=_get(e, "port", p, int, 587),
            starttls=_get(e, "starttls", p, bool, True), username=_get(e, "username", p, str, None),
            password=_get(e, "password", p, str, None), tls_verify=_get(e, "tls_verify", p, bool, True),
            recorder=recorder, max_attempts=attempts, backoff_s=backoff)
    for name, cls in (("sms", SmsChannel), ("voice", VoiceChannel)):
        if name in config:
            s, p = config[name], f"channels.{name}"
            channels[name] = cls(reactor, _get(s, "base_url", p), _get(s, "account_sid", p), _get(s, "auth_token", p),
                                 _get(s, "from", p), recorder=recorder, max_attempts=attempts, backoff_s=backoff)
    webhook = None
    if "webhook" in config:
        w, p = config["webhook"], "channels.webhook"
        webhook = WebhookChannel(reactor, _get(w, "url", p, str, None), _get(w, "headers", p, dict, None),
                                 recorder=recorder, max_attempts=attempts, backoff_s=backoff)
    unknown = sorted(set(config) - {"email", "sms", "voice", "webhook", "retry"})
    if unknown:
        raise PolicyError(f"channels.{unknown[0]}: unknown channel section")
    return channels, webhook
