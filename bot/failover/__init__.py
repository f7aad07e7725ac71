"""Failover: whether a workload can move to another node, the drill, marking a dead node out of
service, and the node-failure thread, with how each looks."""
