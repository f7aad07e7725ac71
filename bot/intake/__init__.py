"""The intake every request follows, for any source: parse, authorize, plan, open a request; the
gate (confirm, approve), clicks, execution and follow."""
