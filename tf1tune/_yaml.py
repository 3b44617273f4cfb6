"""Reading YAML files that users hand to tf1tune: UTF-8 only, bounded in size and in what aliases expand to.

`yaml.safe_load` builds no Python objects beyond plain data, but a few lines of anchors and aliases ("billion
laughs") stand for billions of values once anything walks or copies the result. `read_yaml` counts what the document
expands to before building it, and refuses a document that refers to itself.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from tf1tune.errors import YamlError, first_line

MAX_BYTES = 1 << 20        # a configuration is a few hundred lines
MAX_VALUES = 100_000       # scalars, lists and mappings after alias expansion


def read_yaml(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """The plain data of the YAML file at `path`.

    Raises:
        YamlError: Unreadable, larger than `MAX_BYTES`, not UTF-8, not YAML, or expanding (through aliases) to more
            than `MAX_VALUES` values or to a structure that contains itself.
    """
    text_path = os.fspath(path)
    try:
        with open(text_path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise YamlError(f"{what} '{text_path}' cannot be read: {e.strerror or e}") from e
    if len(data) > MAX_BYTES:
        raise YamlError(f"{what} '{text_path}' is larger than {MAX_BYTES >> 20} MB; a configuration is a few lines")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlError(f"{what} '{text_path}' is not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise YamlError(f"{what} '{text_path}' is not valid YAML: {first_line(e)}") from e
    if node is None:
        return None
    _check_size(node, text_path, what)
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. a timestamp out of range
        raise YamlError(f"{what} '{text_path}' is not valid YAML: {first_line(e)}") from e


def _check_size(root: yaml.Node, path: str, what: str) -> None:
    """Count the values `root` expands to (each alias counted in full), without expanding anything."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            open_nodes.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_VALUES + 1)
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlError(f"{what} '{path}' refers to itself through an alias; write the values out")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
        for child in children:
            if id(child) in open_nodes:
                raise YamlError(f"{what} '{path}' refers to itself through an alias; write the values out")
    if sizes[id(root)] > MAX_VALUES:
        raise YamlError(f"{what} '{path}' expands to more than {MAX_VALUES:,} values through its aliases (anchors "
                        "'&' reused with '*'); write the values out")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
