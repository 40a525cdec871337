"""A release from push to prod: the event, the ledger, the rollout on each target, hooks, promotion, summary."""
