"""Fault injection for the reliability tests (issue 8): a fault-injecting TCP proxy, power cuts
and full or read-only disks, and the figures each test reports for the README's table."""
