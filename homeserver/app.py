"""Command line and wiring: ``python -m homeserver generate-config ...`` and ``python -m homeserver run -c FILE``.

:class:`HomeServer` builds every component once, in dependency order, and hands them to each other; nothing else
constructs components. The HTTP listeners start last, so a request never meets a half-built server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from homeserver.config import ConfigError, HomeserverConfig, generate_config_yaml, load_config

logger = logging.getLogger("homeserver")


class HomeServer:
    """Every long-lived component of one homeserver process.

    Attributes are created by :meth:`setup` (database, stores, handlers) and :meth:`start_listening` (HTTP).
    ``clock`` is the reactor (``seconds()``, ``callLater``); tests may pass a fake one.
    """

    def __init__(self, config: HomeserverConfig, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self.reactor = reactor
        self.clock = reactor
        self.hostname = config.server_name
        self.listening_ports: list[Any] = []

    def setup(self) -> None:
        """Open the database, apply migrations and build stores and handlers."""
        from homeserver.http.auth import Auth
        from homeserver.notifier import Notifier
        from homeserver.storage.accounts import AccountStore
        from homeserver.storage.database import Database
        from homeserver.storage.migrations import apply_migrations
        from homeserver.streams import StreamPositions

        self.signing_key = load_or_create_signing_key(self.config.signing_key_path)
        self.db = Database(self.config.database, self.reactor)
        self.db.start()
        apply_migrations(self.db)
        self.notifier = Notifier(self.reactor)
        self.stream_positions = StreamPositions()
        self.account_store = AccountStore(self.db)
        self.auth = Auth(self)
        self._setup_components()

    def _setup_components(self) -> None:
        """Stores and handlers of every area, in dependency order."""
        from homeserver.components import build_components

        build_components(self)

    def build_root_resource(self, resources: frozenset[str]) -> Any:
        """The Twisted resource for a listener serving ``resources`` (names from the config, e.g. ``client``,
        ``metrics``): only ``/metrics`` for a metrics-only listener, else a :class:`JsonRouter` with every
        client-server servlet (plus ``GET /metrics`` when ``metrics`` is listed).
        """
        from twisted.web.resource import Resource

        from homeserver.http.server import JsonRouter
        from homeserver.rest import register_all_servlets

        if resources == frozenset({"metrics"}):
            from prometheus_client.twisted import MetricsResource

            root = Resource()
            root.putChild(b"metrics", MetricsResource())
            root.putChild(b"_synapse", Resource())
            return root
        router = JsonRouter(self)
        register_all_servlets(self, router)
        if "metrics" in resources:
            from homeserver.rest.metrics import register_metrics

            register_metrics(router)
        return router

    def start_listening(self) -> None:
        """Listen on every configured listener and bind address (TCP), appending each port to ``listening_ports``.
        Raises Twisted's ``CannotListenError`` when a port is taken.
        """
        from homeserver.http.server import MatrixSite

        for listener in self.config.listeners:
            site = MatrixSite(self.build_root_resource(listener.resources), self.config.max_request_body_size,
                              self.config.max_upload_size)
            for address in listener.bind_addresses:
                port = self.reactor.listenTCP(listener.port, site, interface=address)
                self.listening_ports.append(port)
                logger.info("listening on http://%s:%d/ (%s)", address, port.getHost().port,
                            ", ".join(sorted(listener.resources)))


def load_or_create_signing_key(path: str) -> Any:
    """Read the ed25519 signing key at ``path`` (Synapse's format: ``ed25519 <version> <base64 seed>``), creating
    it on first run. Raises ConfigError for an unreadable key file."""
    from signedjson.key import generate_signing_key, read_signing_keys, write_signing_keys

    if not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        key = generate_signing_key("a_" + os.urandom(3).hex())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            write_signing_keys(f, [key])
        return key
    try:
        with open(path) as f:
            keys = read_signing_keys(f)
    except Exception as e:  # noqa: BLE001 - any parse failure is a config error naming the file
        raise ConfigError(f"signing_key_path: cannot read signing key {path}: {e}") from e
    if not keys:
        raise ConfigError(f"signing_key_path: {path} holds no key")
    return keys[0]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from twisted.python import log as twisted_log

    twisted_log.PythonLoggingObserver(loggerName="twisted").start()


def cmd_generate_config(args: argparse.Namespace) -> int:
    """``homeserver generate-config``: write ``<data_dir>/homeserver.yaml`` and a signing key. Returns the exit
    status: 0 on success, 1 if the file exists without ``--force``, 2 on a bad value (``ConfigError``).
    """
    data_dir = os.path.abspath(args.data_dir)
    path = os.path.join(data_dir, "homeserver.yaml")
    if os.path.exists(path) and not args.force:
        print(f"{path} exists already; not overwriting it (use --force)", file=sys.stderr)
        return 1
    try:
        text = generate_config_yaml(args.server_name, data_dir, port=args.port, database_url=args.database_url,
                                    open_registration=args.open_registration, metrics_port=args.metrics_port)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(data_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    config = load_config(path)
    load_or_create_signing_key(config.signing_key_path)
    print(f"wrote {path}")
    print(f"signing key: {config.signing_key_path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``homeserver run -c <config>``: load the config, set up every component, listen and run the reactor until
    shutdown. Returns the exit status; 2 for a configuration error or a port that cannot be bound.
    """
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level)
    from homeserver.http.tls_gate import tls_modules_hidden

    # Twisted and the server load without TLS (the server never serves it): about 13 MiB less resident memory.
    # Outbound https:// loads it on first use (homeserver.http.client.OutboundEndpointFactory).
    with tls_modules_hidden():
        import treq.client  # noqa: F401 - loaded here, not by the first push or transaction

        import homeserver.http.client  # noqa: F401
        from twisted.internet import reactor
        from twisted.internet.error import CannotListenError

        hs = HomeServer(config, reactor)
    try:
        with tls_modules_hidden():
            hs.setup()
            hs.start_listening()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        _abort_start(hs)
        return 2
    except CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or e.socketError
        print(f"cannot listen on {e.interface}:{e.port}: {reason} (change listeners[].port in {args.config})",
              file=sys.stderr)
        _abort_start(hs)
        return 2
    except Exception:  # noqa: BLE001 - e.g. database unreachable: say why and exit instead of hanging
        logger.exception("start-up failed")
        _abort_start(hs)
        return 1
    _tune_gc()
    if config.pid_file:
        with open(config.pid_file, "w") as f:
            f.write(str(os.getpid()))

    def _stop(signum: int, _frame: Any) -> None:
        logger.info("signal %d: shutting down", signum)
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("Tocsin homeserver %s is running", config.server_name)
    reactor.run()
    return 0


# Cyclic garbage collector thresholds for the running server (CPython defaults: 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 100)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path as far as possible.

    With the defaults, a full (generation 2) collection ran about every 5 s under the latency benchmark and took
    about 90 ms on this machine's 2-core VM, stalling every request for that long: it was the whole p99 tail.
    Objects made during start-up (modules, classes, configuration, warmed caches) are frozen out of collection,
    and the thresholds make collections rarer: request-scoped objects are freed by reference counting anyway,
    collection only matters for cycles, which are rare in this code.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _abort_start(hs: HomeServer) -> None:
    db = getattr(hs, "db", None)
    if db is not None:
        db.stop()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: parse ``argv`` (``generate-config`` or ``run``) and return the exit status."""
    parser = argparse.ArgumentParser(prog="homeserver", description="Tocsin Matrix homeserver")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate-config", help="write homeserver.yaml and a signing key into a data directory")
    gen.add_argument("--server-name", required=True)
    gen.add_argument("--data-dir", required=True)
    gen.add_argument("--port", type=int, default=8008)
    gen.add_argument("--metrics-port", type=int, default=None)
    gen.add_argument("--database-url", default=None, help="postgresql://user@host:port/dbname (default: SQLite)")
    gen.add_argument("--open-registration", action="store_true",
                     help="let anyone register (m.login.dummy); for private networks and tests")
    gen.add_argument("--force", action="store_true", help="overwrite an existing homeserver.yaml")
    run = sub.add_parser("run", help="serve")
    run.add_argument("-c", "--config", required=True)
    args = parser.parse_args(argv)
    if args.command == "generate-config":
        return cmd_generate_config(args)
    return cmd_run(args)
