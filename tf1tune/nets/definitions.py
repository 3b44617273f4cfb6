"""Imports every module that defines nets, so that each registers itself."""

from tf1tune.nets import slim_nets  # noqa: F401
