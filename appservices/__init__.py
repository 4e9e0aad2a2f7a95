"""Tocsin application services: alert bridge, escalation and notification channels."""
