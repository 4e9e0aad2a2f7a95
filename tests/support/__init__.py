"""Test support: start real homeserver processes and talk to them over HTTP like a client does."""
