"""The local runtime: dev tooling that runs the control plane on one machine; never deployed."""
