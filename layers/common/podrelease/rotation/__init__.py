"""Secrets Manager rotation: the staging-label steps, the workload JWT secret, the approval signing key."""
