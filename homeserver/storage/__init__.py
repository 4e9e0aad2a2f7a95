"""Storage: the connection pool (SQLite or PostgreSQL), schema migrations and one store module per area.

All SQL of the homeserver lives in this package and runs on both databases. SQL is written with ``?``
placeholders; :class:`homeserver.storage.database.Txn` rewrites them for psycopg2.
"""
