"""Who may ask for what, where: the authorization policy over the configuration's ``rbac``."""
