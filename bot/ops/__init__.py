"""Operating the bot: the commands an operator runs beside ``deckhand run`` (check-config, ids,
render, audit, rbac, kubeconfig) and the health and metrics port."""
