"""Helpers for tests that drive the real Asterisk sandbox with SIPp."""
