"""Shared by every stage: named errors, logging with redaction, configuration, notification subjects."""
