"""The alert bridge: Alertmanager, Grafana, Zabbix and generic JSON alerts into Matrix rooms.

Run it with ``python -m appservices.alerts -c config/alerts.yaml``. See docs/alerts.md.
Modules: ``ingest`` (payload parsing), ``auth`` (bearer/HMAC), ``routing`` (label matchers -> rooms),
``render`` (plain body + sanitised HTML), ``store`` (SQLite/PostgreSQL), ``incidents`` (the state machine and
the Matrix side), ``commands`` (chat commands), ``listener`` (the in-process hook for escalation),
``web`` (HTTP resources), ``metrics``, ``config``, ``app`` (wiring).
"""
