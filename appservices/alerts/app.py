"""Wiring and command line: ``python -m appservices.alerts -c config/alerts.yaml``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from twisted.internet import reactor as _reactor

from appservices.common.client import MatrixClient

from . import store
from .config import AlertsConfig, ConfigError, load_config
from .incidents import IncidentManager
from .metrics import AlertMetrics
from .web import make_site


class AlertBridge:
    """The assembled bridge: database, client, metrics, incident manager and HTTP site.

    Escalation and other in-process consumers call ``bridge.manager.add_listener(listener)``.
    """

    def __init__(self, config: AlertsConfig, reactor: Any = None) -> None:
        self.config = config
        self.reactor = reactor or _reactor
        self.metrics = AlertMetrics()
        self.db = store.Database(config.database_engine, config.database_args)
        self.client = MatrixClient(config.homeserver_url, config.registration.as_token)
        self.manager = IncidentManager(config, self.db, self.client, self.metrics)
        self.site = make_site(config, self.manager, self.metrics)
        self.port: Any = None

    def start(self) -> None:
        """Create the schema, listen, and start sending the outbox."""
        self.db.run_sync(store.prepare)
        self.db.start(self.reactor)
        self.port = self.reactor.listenTCP(self.config.listen_port, self.site, interface=self.config.listen_host)
        self.manager.start()


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit status (2 on a config error)."""
    parser = argparse.ArgumentParser(prog="python -m appservices.alerts", description="Tocsin alert bridge")
    parser.add_argument("-c", "--config", required=True, help="path to the bridge's YAML config")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except (OSError, ConfigError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    bridge = AlertBridge(config)
    # Escalation runs in this process when alerts.yaml has an `escalation:` key (see docs/escalation.md).
    from appservices.escalation.integration import EscalationSetupError, attach_escalation

    try:
        escalation = attach_escalation(bridge, args.config)
    except (OSError, EscalationSetupError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    bridge.start()
    if escalation is not None:
        escalation.start().addErrback(lambda f: logging.getLogger(__name__).error(
            "escalation failed to start: %s", f.getTraceback()))
    logging.getLogger(__name__).info(
        "alert bridge listening on %s:%d for %s", config.listen_host, config.listen_port, config.server_name
    )
    _reactor.run()
    return 0
