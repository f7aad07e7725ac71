"""What Deckhand knows about the cluster: the watch-fed cache, reading namespaces through it, and
pure logic over the objects as the API serves them (rollouts, managed fields)."""
