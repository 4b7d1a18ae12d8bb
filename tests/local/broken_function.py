"""A handler module whose cold start fails, as a function with a bad configuration would."""

raise RuntimeError("DISPATCHER_SUBSCRIPTION: missing")
