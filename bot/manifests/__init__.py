"""Rendering a workload's manifests for one environment: the exact objects /deploy applies."""
