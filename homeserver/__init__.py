"""Tocsin homeserver: a Matrix homeserver (client-server and application-service APIs) on Twisted."""
