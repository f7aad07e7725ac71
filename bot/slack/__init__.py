"""Slack's side of the bot: the listeners, Socket Mode and HTTP serving, the payload models, the
outbox (the one way out for channel messages), Block Kit primitives and limits, and the one way
to answer a person privately. The only package that imports ``slack_sdk`` and ``slack_bolt``."""
