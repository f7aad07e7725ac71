"""Alert threads: the Alertmanager webhook, one Slack thread per alert group, its buttons and
silences, and how it looks."""
