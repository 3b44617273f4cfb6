"""Net definitions and their registry (`get_net`, `list_nets`, `register_net`, `build_net`)."""

from tf1tune.nets.build import build_net
from tf1tune.nets.registry import NetConfig, get_net, list_nets, register_net

__all__ = ["NetConfig", "build_net", "get_net", "list_nets", "register_net"]
