"""Escalation: on-call schedules, escalation policies and the escalation engine."""
