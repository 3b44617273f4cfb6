"""Net definitions and their registry (`get_net`, `list_nets`, `register_net`, `build_net`).

The registry (`registry`) is a leaf; importing this package imports the definitions (`definitions`), each of
which registers its nets with `@register_net`, so that the registry is complete before any lookup.
"""

from tf1tune.nets import definitions  # noqa: F401  (registers the built-in nets)
from tf1tune.nets.build import build_net
from tf1tune.nets.registry import NetConfig, get_net, list_nets, register_net

__all__ = ["NetConfig", "build_net", "get_net", "list_nets", "register_net"]
