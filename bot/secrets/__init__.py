"""SOPS-encrypted Kubernetes Secrets, decrypted in memory only."""
