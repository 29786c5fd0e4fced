"""Integrations with systems around collab (webhooks); the only layer making outbound HTTP calls."""
