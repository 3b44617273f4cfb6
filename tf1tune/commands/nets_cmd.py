"""`tf1tune nets`: the registered net definitions and their metadata."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "list the registered nets (slim:NAME sources)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `nets`."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Print the registry."""
    from tf1tune import _json
    from tf1tune.nets.registry import get_net, list_nets

    rows: list[dict[str, Any]] = []
    for name in list_nets():
        c = get_net(name)
        rows.append({"name": name, "scope": c.scope, "input_size": list(c.input_size), "channels": c.channels,
                     "num_classes": c.num_classes, "background_class": c.background_class,
                     "classifier_scopes": list(c.classifier_scopes), "default_endpoint": c.default_endpoint,
                     "preprocessing": c.preprocessing, "description": c.description})
    if args.json:
        print(_json.dumps(rows))
        return 0
    print(f"{'name':<16} {'input':<9} {'classes':<8} {'classifier scopes':<44} default endpoint")
    for r in rows:
        size = "x".join(map(str, r["input_size"]))
        print(f"{r['name']:<16} {size:<9} {r['num_classes']:<8} {', '.join(r['classifier_scopes']):<44} "
              f"{r['default_endpoint']}")
    return 0
