"""The Kubernetes gateway: the only package that imports ``kubernetes``."""
