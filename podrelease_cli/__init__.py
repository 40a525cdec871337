"""`podrelease`: the operator's command for the release control plane (history, status, rollback,
abort, re-release, blocked digests, DORA metrics), against a deployed stack or the local runtime.

An operator tool, not part of the Lambda layer: it imports the layer's `podrelease.release` modules
(the ledger's item shapes, the starter's execution naming, the DORA computation) so there is one copy
of each, and runs with the caller's own AWS credentials.
"""
