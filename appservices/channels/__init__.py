"""Notification channels: Matrix mention, email (SMTP), SMS and voice (Twilio-compatible API), JSON webhook."""
