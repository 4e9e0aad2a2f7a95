"""Database access for SQLite (default) and PostgreSQL, off the reactor thread.

Every query runs inside :meth:`Database.run_interaction`, which runs a function with a :class:`Txn` in a thread
pool and commits (or rolls back) at the end, retrying transactions the database aborted for serialization or
deadlock reasons. SQLite uses one connection in one thread (WAL mode): SQLite allows one writer at a time anyway,
and a single thread keeps it free of ``database is locked`` errors. PostgreSQL uses one connection per pool thread.

Group commit (SQLite): transactions that queue up while the database thread is busy run together in one SQLite
transaction, each inside its own SAVEPOINT, and are committed (and synced to disk) once. Each keeps its own
outcome: one that raises is rolled back to its savepoint alone and its caller gets the exception; the others'
callers get their results only after the shared COMMIT, so an acknowledged write is as durable as before while
one disk sync serves many writes.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterable, Sequence, TypeVar

from prometheus_client import Counter
from twisted.internet import defer
from twisted.python.failure import Failure

from homeserver.config import DatabaseConfig

logger = logging.getLogger(__name__)

R = TypeVar("R")

_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected
# At most this many queued transactions share one SQLite commit (bounds the wait of the first of them).
_GROUP_COMMIT_MAX = 64

db_transactions = Counter("tocsin_db_transactions", "Database transactions run, by description", ["desc"])
db_transaction_seconds = Counter("tocsin_db_transaction_seconds", "Time spent in database transactions (s, "
                                 "on the database thread, queueing excluded), by description", ["desc"])


def is_integrity_error(e: BaseException) -> bool:
    """True when ``e`` is a constraint violation (unique, foreign key, not-null) raised by either engine's driver:
    ``sqlite3.IntegrityError`` or psycopg2's ``IntegrityError`` (``UniqueViolation`` is a subclass). Neither driver
    is imported for the check, so a PostgreSQL deployment never loads sqlite3 and an SQLite one never loads
    psycopg2."""
    return any(cls.__name__ == "IntegrityError" and cls.__module__.partition(".")[0] in ("sqlite3", "psycopg2")
               for cls in type(e).__mro__)


class Txn:
    """A cursor inside one transaction. SQL uses ``?`` placeholders on both engines.

    ``call_after(fn, *args)`` schedules ``fn`` on the reactor thread after the transaction has committed (used to
    advance stream positions and wake the notifier only once data is durable).

    ``execute_write``/``executemany_write`` are for writes whose outcome nobody reads (no rows, no rowcount): on
    PostgreSQL they are held and sent together with the next statement, or before COMMIT, in one round trip
    (a send's transaction went from eight round trips to three). An error they cause (a constraint violation)
    surfaces from that later statement, still inside this transaction. On SQLite they run at once.
    """

    __slots__ = ("_cursor", "is_postgres", "_after", "_convert", "_pending")

    def __init__(self, cursor: Any, is_postgres: bool, convert: Callable[[str], str]) -> None:
        self._cursor = cursor
        self.is_postgres = is_postgres
        self._after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._convert = convert
        self._pending: list[bytes] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "Txn":
        """Run one statement (after the held writes, in the same round trip). On PostgreSQL a text parameter
        holding NUL (which it cannot store) raises BadJsonError (400 ``M_BAD_JSON``) rather than failing the
        request with a 500."""
        if self._pending:
            self._pending.append(self._bind(sql, params))
            self.flush()
            return self
        try:
            self._cursor.execute(self._convert(sql), tuple(params))
        except ValueError as e:
            self._raise_nul(e)
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run ``sql`` (``?`` placeholders) once per row of ``rows``; on PostgreSQL in batches of 500. No-op for no
        rows.
        """
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        if self.is_postgres:
            from psycopg2.extras import execute_batch

            self.flush()
            execute_batch(self._cursor, self._convert(sql), rows, page_size=500)
        else:
            self._cursor.executemany(sql, rows)

    def execute_write(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Like :meth:`execute` for a write whose result is never read; PostgreSQL: held (see the class)."""
        if self.is_postgres:
            self._pending.append(self._bind(sql, params))
        else:
            self.execute(sql, params)

    def executemany_write(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Like :meth:`executemany` for writes whose results are never read; PostgreSQL: held (see the class)."""
        if self.is_postgres:
            self._pending.extend(self._bind(sql, row) for row in rows)
        else:
            self.executemany(sql, rows)

    def flush(self) -> None:
        """Send the held writes now (one round trip); the transaction runner calls it before COMMIT."""
        if self._pending:
            batch = b";".join(self._pending)
            self._pending.clear()
            self._cursor.execute(batch)  # no parameters: already bound, so a "%" in the data stays as it is

    def _bind(self, sql: str, params: Sequence[Any]) -> bytes:
        try:
            return self._cursor.mogrify(self._convert(sql), tuple(params))
        except ValueError as e:
            self._raise_nul(e)
            raise

    def _raise_nul(self, e: ValueError) -> None:
        if self.is_postgres and "NUL" in str(e):
            from homeserver.http.errors import BadJsonError

            raise BadJsonError("Text with NUL (U+0000) characters cannot be stored") from e
        raise e

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row of the last query as a tuple, or None."""
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        """The remaining rows of the last query as tuples."""
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def call_after(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the reactor thread once this transaction has committed (not on rollback)."""
        self._after.append((fn, args))

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (?, ?, ...)`` clause and its parameters; an empty list yields a clause that is false."""
        if not values:
            return "1 = 0", []
        return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


class _WorkerPool:
    """``size`` database threads taking jobs from one FIFO queue; results come back on the reactor thread.

    Twisted's ThreadPool wraps every job in a closure that refers to itself: one reference cycle per database
    interaction, left to the cyclic garbage collector, whose pauses (20-30 ms every few seconds under the
    latency benchmark) were the p99. These jobs are plain tuples, freed by reference counting.
    """

    def __init__(self, reactor: Any, size: int, name: str) -> None:
        self._reactor = reactor
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[defer.Deferred | None, Callable[..., Any], tuple[Any, ...]] | None] = \
            queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads (daemon threads: a hung query cannot keep the process alive at exit)."""
        for i in range(self._size):
            thread = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Let the threads finish the jobs queued so far, then end them (waits up to 10 s each)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(10)
        self._threads.clear()

    def run(self, func: Callable[..., R], *args: Any) -> "defer.Deferred[R]":
        """``func(*args)`` on a pool thread; the Deferred fires on the reactor thread with its result (or a
        Failure)."""
        d: defer.Deferred = defer.Deferred()
        self._jobs.put((d, func, args))
        return d

    def call(self, func: Callable[..., Any], *args: Any) -> None:
        """``func(*args)`` on a pool thread, nobody waiting for it (an exception is logged)."""
        self._jobs.put((None, func, args))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            d, func, args = job
            job = None
            try:
                result = func(*args)
            except BaseException:  # noqa: BLE001 - handed to the caller's Deferred (or logged)
                if d is None:
                    logger.exception("database job %r failed", func)
                else:
                    self._reactor.callFromThread(d.errback, Failure())
            else:
                if d is not None:
                    self._reactor.callFromThread(d.callback, result)
            d = func = args = result = None  # nothing of this job stays alive while the thread waits


# How often the SQLite checkpoint thread copies the WAL into the database file (seconds).
CHECKPOINT_INTERVAL_S = 1.0


class Database:
    """A pool of connections to one database and the thread pool that uses them.

    Args:
        config: ``database`` section of the homeserver config.
        reactor: the Twisted reactor.
    """

    def __init__(self, config: DatabaseConfig, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.is_postgres = config.is_postgres
        self.engine_name = "postgresql" if self.is_postgres else "sqlite"
        size = int(config.args.get("cp_max", 5)) if self.is_postgres else 1
        self._pool = _WorkerPool(reactor, size, f"db-{self.engine_name}")
        # SQLite: reads that need not wait behind a disk sync (run_read) use a second, read-only connection on
        # a thread of its own; WAL lets it read the last committed state while the writer commits.
        self._read_pool = (None if self.is_postgres
                           else _WorkerPool(reactor, 1, "db-sqlite-read"))
        self._local = threading.local()
        self._all_conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}
        self._started = False
        # SQLite group commit: interactions waiting for the database thread, and whether a drain is scheduled.
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._draining = False
        # SQLite WAL checkpoints: on a thread of their own once started (see _checkpoint_loop).
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    def start(self) -> None:
        """Start the thread pool (and, on a SQLite file, the WAL checkpointer); stopped before the reactor shuts
        down."""
        if self._started:
            return
        self._started = True
        self._pool.start()
        if self._read_pool is not None:
            self._read_pool.start()
        if not self.is_postgres and self.config.args["database"] != ":memory:":
            self._stop_checkpoints.clear()
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="db-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL frames into the database file every :data:`CHECKPOINT_INTERVAL_S` seconds.

        SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages, so about every few
        hundred messages one send waited 50-140 ms for it (and every send queued behind it): the p99 of the
        latency benchmark. Connections opened after start() turn the automatic checkpoint off; this thread runs
        PASSIVE checkpoints on its own connection instead, which never block the writer (they copy the frames no
        reader still needs; the writer restarts the WAL from the beginning once all were copied).
        """
        import sqlite3

        conn = sqlite3.connect(self.config.args["database"], check_same_thread=False, isolation_level=None,
                               timeout=30)
        try:
            conn.execute(f"PRAGMA synchronous={self._sqlite_synchronous()}")
            # A new server starts the database before its migrations create anything: this connection then opened
            # an empty file, took it for a rollback-journal database, and every wal_checkpoint on it was a no-op
            # (the WAL grew by gigabytes under load and was copied back only at shutdown). Say WAL here too.
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            while not self._stop_checkpoints.wait(CHECKPOINT_INTERVAL_S):
                try:
                    (_busy, wal_frames, _copied), = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if wal_frames < 0:  # not in WAL mode on this connection after all: say it again
                        conn.execute("PRAGMA journal_mode=WAL").fetchall()
                except sqlite3.Error:
                    logger.warning("WAL checkpoint failed; retrying in %s s", CHECKPOINT_INTERVAL_S, exc_info=True)
        finally:
            conn.close()

    def _sqlite_synchronous(self) -> str:
        sync = str(self.config.args.get("synchronous", "FULL")).upper()
        return sync if sync in ("FULL", "NORMAL", "EXTRA") else "FULL"

    def stop(self) -> None:
        """Stop the database threads and close every connection; no-op when not started."""
        if not self._started:
            return
        self._started = False
        self._pool.stop()
        if self._read_pool is not None:
            self._read_pool.stop()
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join(10)
            self._checkpointer = None
        with self._conns_lock:
            for conn in self._all_conns:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing at shutdown, nothing to do about it
                    pass
            self._all_conns.clear()

    # -- connections -------------------------------------------------------------------------------------------

    def _convert_sql(self, sql: str) -> str:
        if not self.is_postgres:
            return sql
        converted = self._sql_cache.get(sql)
        if converted is None:
            converted = sql.replace("%", "%%").replace("?", "%s")
            self._sql_cache[sql] = converted
        return converted

    def _connect(self) -> Any:
        if self.is_postgres:
            import psycopg2

            args = {k: v for k, v in self.config.args.items() if k not in ("cp_min", "cp_max")}
            if "database" in args and "dbname" not in args:
                args["dbname"] = args.pop("database")
            conn = psycopg2.connect(**args)
            conn.set_session(isolation_level="READ COMMITTED", autocommit=False)
        else:
            import sqlite3  # here, not at the top: a PostgreSQL deployment never loads it (about 1 MiB resident)

            path = self.config.args["database"]
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed (acknowledged) transaction survives power loss, not just a process crash.
            conn.execute(f"PRAGMA synchronous={self._sqlite_synchronous()}")
            if self._checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it, off the commit path
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-65536")
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _get_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._conns_lock:
                if conn in self._all_conns:
                    self._all_conns.remove(conn)
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    # -- transactions ------------------------------------------------------------------------------------------

    def _run_in_thread(self, desc: str, func: Callable[..., R], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> tuple[R, list[tuple[Callable[..., Any], tuple[Any, ...]]]]:
        started = time.perf_counter()
        try:
            return self._run_attempts(desc, func, args, kwargs)
        finally:
            db_transactions.labels(desc).inc()
            db_transaction_seconds.labels(desc).inc(time.perf_counter() - started)

    def _run_attempts(self, desc: str, func: Callable[..., R], args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[R, list[tuple[Callable[..., Any], tuple[Any, ...]]]]:
        attempts = 0
        while True:
            attempts += 1
            conn = self._get_conn()
            cursor = conn.cursor()
            txn = Txn(cursor, self.is_postgres, self._convert_sql)
            try:
                if not self.is_postgres:
                    cursor.execute("BEGIN")
                result = func(txn, *args, **kwargs)
                txn.flush()
                conn.commit() if self.is_postgres else cursor.execute("COMMIT")
                return result, txn._after
            except Exception as e:
                try:
                    conn.rollback() if self.is_postgres else cursor.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the connection may be gone; it is replaced below
                    self._drop_conn()
                if self._should_retry(e) and attempts < 5:
                    logger.info("retrying transaction %s after %s", desc, e)
                    time.sleep(0.01 * attempts)
                    continue
                raise
            finally:
                try:
                    cursor.close()
                except Exception:  # noqa: BLE001
                    pass

    def _should_retry(self, e: Exception) -> bool:
        if self.is_postgres:
            import psycopg2

            if isinstance(e, psycopg2.OperationalError) and getattr(e, "pgcode", None) is None:
                self._drop_conn()  # connection lost: reconnect and try again
                return True
            return getattr(e, "pgcode", None) in _PG_RETRYABLE
        import sqlite3

        return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)

    def run_interaction(self, desc: str, func: Callable[..., R], *args: Any, **kwargs: Any) -> "defer.Deferred[R]":
        """Run ``func(txn, *args, **kwargs)`` in one transaction in the pool; the Deferred fires with its result.

        ``desc`` names the transaction in logs. Exceptions from ``func`` roll back and propagate unchanged
        (so a MatrixError raised inside reaches the client as is). Callbacks registered with ``txn.call_after``
        run on the reactor thread after commit, in order. Cancelling the Deferred (a client went away) does not
        stop the transaction: it waits until the transaction has ended and its ``call_after`` callbacks have run
        (the in-memory caches they keep in step with the tables), then fails with CancelledError.
        """
        d: defer.Deferred
        if self.is_postgres:
            d = self._pool.run(self._run_in_thread, desc, func, args, kwargs)
        else:
            queued = _Queued(desc, func, args, kwargs, defer.Deferred())
            with self._queue_lock:
                self._queue.append(queued)
                start = not self._draining
                self._draining = True
            if start:
                self._pool.call(self._drain)
            d = queued.deferred
        d.addCallback(_run_after_commit)
        return delay_cancellation(d)

    # -- SQLite group commit (database thread) -----------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            with self._queue_lock:
                batch = self._queue[:_GROUP_COMMIT_MAX]
                del self._queue[:_GROUP_COMMIT_MAX]
                if not batch:
                    self._draining = False
                    return
            outcomes = self._run_batch(batch)
            self.reactor.callFromThread(_deliver, outcomes)

    def _run_batch(self, batch: list["_Queued"]) -> list[tuple["_Queued", bool, Any]]:
        """Run ``batch`` as one transaction with a savepoint per interaction; fall back to one transaction each
        when the shared transaction itself fails (nothing of it was committed then)."""
        if len(batch) > 1:
            started = time.perf_counter()
            try:
                outcomes = self._run_grouped(batch)
            except Exception:  # noqa: BLE001 - e.g. SQLITE_BUSY from another process: retried one by one below
                logger.info("group commit of %d transactions failed; running them one by one", len(batch),
                            exc_info=True)
            else:
                share = (time.perf_counter() - started) / len(batch)
                for q in batch:
                    db_transactions.labels(q.desc).inc()
                    db_transaction_seconds.labels(q.desc).inc(share)
                return outcomes
        out: list[tuple[_Queued, bool, Any]] = []
        for q in batch:
            try:
                out.append((q, True, self._run_in_thread(q.desc, q.func, q.args, q.kwargs)))
            except BaseException:  # noqa: BLE001 - handed to the caller's Deferred
                out.append((q, False, Failure()))
        return out

    def _run_grouped(self, batch: list["_Queued"]) -> list[tuple["_Queued", bool, Any]]:
        conn = self._get_conn()
        cursor = conn.cursor()
        out: list[tuple[_Queued, bool, Any]] = []
        try:
            cursor.execute("BEGIN")
            try:
                for i, q in enumerate(batch):
                    txn = Txn(cursor, False, self._convert_sql)
                    cursor.execute(f"SAVEPOINT g{i}")
                    try:
                        result = q.func(txn, *q.args, **q.kwargs)
                    except Exception:  # noqa: BLE001 - this interaction alone fails
                        failure = Failure()
                        # Raises if SQLite already rolled the whole transaction back (then all are retried).
                        cursor.execute(f"ROLLBACK TO g{i}")
                        cursor.execute(f"RELEASE g{i}")
                        out.append((q, False, failure))
                    else:
                        cursor.execute(f"RELEASE g{i}")
                        out.append((q, True, (result, txn._after)))
                cursor.execute("COMMIT")
            except BaseException:
                try:
                    cursor.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the connection may be gone
                    self._drop_conn()
                raise
        finally:
            try:
                cursor.close()
            except Exception:  # noqa: BLE001
                pass
        return out

    async def run_read(self, desc: str, func: Callable[..., R], *args: Any) -> R:
        """Like :meth:`run_interaction` for a transaction that only reads: on SQLite it runs on the read-only
        connection, so it never waits for other transactions' commits; it sees everything committed before it
        starts. ``func`` must not write (SQLite refuses) nor use ``call_after``."""
        if self._read_pool is None:
            return await self.run_interaction(desc, func, *args)
        result, _after = await self._read_pool.run(self._run_read_in_thread, desc, func, args)
        return result

    def _run_read_in_thread(self, desc: str, func: Callable[..., R],
                            args: tuple[Any, ...]) -> tuple[R, list[tuple[Callable[..., Any], tuple[Any, ...]]]]:
        if getattr(self._local, "conn", None) is None:
            self._get_conn().execute("PRAGMA query_only=ON")
        return self._run_in_thread(desc, func, args, {})

    async def execute_read(self, desc: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """:meth:`execute` for a SELECT, through :meth:`run_read`."""
        return await self.run_read(desc, lambda txn: txn.execute(sql, params).fetchall())

    async def execute(self, desc: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement and return all its rows (an empty list for statements without rows)."""

        def _do(txn: Txn) -> list[tuple[Any, ...]]:
            txn.execute(sql, params)
            try:
                return txn.fetchall()
            except Exception:  # noqa: BLE001 - statements without a result set
                return []

        return await self.run_interaction(desc, _do)

    def run_interaction_sync(self, desc: str, func: Callable[..., R], *args: Any) -> R:
        """Run a transaction on the calling thread (start-up only, before the reactor runs)."""
        result, after = self._run_in_thread(desc, func, args, {})
        for fn, fargs in after:
            fn(*fargs)
        return result


class _Queued:
    """One interaction waiting for the SQLite thread."""

    __slots__ = ("desc", "func", "args", "kwargs", "deferred")

    def __init__(self, desc: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 deferred: defer.Deferred) -> None:
        self.desc = desc
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.deferred = deferred


def _deliver(outcomes: list[tuple[_Queued, bool, Any]]) -> None:
    """Reactor thread: hand each interaction's result (or failure) to its caller, in queue order."""
    for q, ok, value in outcomes:
        if ok:
            q.deferred.callback(value)
        else:
            q.deferred.errback(value)


def _run_after_commit(outcome: tuple[Any, list[tuple[Callable[..., Any], tuple[Any, ...]]]]) -> Any:
    """Reactor thread: run a committed transaction's ``call_after`` callbacks, in order; returns its result."""
    result, after = outcome
    for fn, fargs in after:
        fn(*fargs)
    return result


def delay_cancellation(inner: "defer.Deferred[R]") -> "defer.Deferred[R]":
    """A Deferred with ``inner``'s outcome whose cancellation never reaches ``inner``.

    Cancelling it waits until ``inner`` has finished and only then fails with CancelledError (``inner``'s own
    outcome is dropped; a failure is logged). For work that must not stop half way once started: a transaction
    and the in-memory state kept in step with it after commit, an event's persistence and its announcement. A
    caller cancelled meanwhile (its client went away) resumes only when that work is complete, so whatever it
    releases next (a room's lock) is never released under a write still in flight.
    """
    cancelled: list[bool] = []

    def on_cancel(outer: defer.Deferred) -> None:
        # Deferred.cancel() fails ``outer`` with CancelledError as soon as this returns: hold that until
        # ``inner`` is done. (The closure holds no reference to ``outer``: no reference cycle per call.)
        cancelled.append(True)
        outer.pause()

    outer: defer.Deferred = defer.Deferred(on_cancel)

    def on_done(result: Any) -> None:
        if not cancelled:
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)
            return
        if isinstance(result, Failure) and not result.check(defer.CancelledError):
            logger.warning("work whose caller was cancelled failed: %s", result.getErrorMessage(),
                           exc_info=(result.type, result.value, result.getTracebackObject()))
        outer.unpause()

    inner.addBoth(on_done)
    return outer


def deferred(coro: Any) -> defer.Deferred:
    """Wrap a coroutine in a Deferred (for Twisted APIs that want one)."""
    return defer.ensureDeferred(coro)
