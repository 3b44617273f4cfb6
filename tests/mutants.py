"""Seeded mutations of the files tf1tune reads: bit flips, truncation, spliced bytes, swapped protobuf and YAML fields.

Each mutator takes the file's bytes and a `numpy` generator and returns new bytes plus a short label saying what
it did, so that a failing fuzz case can be rebuilt from its label and seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import yaml
from google.protobuf import message, text_format
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

Mutator = Callable[[bytes, np.random.Generator], tuple[bytes, str]]


def bit_flips(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """1 to 16 random bits flipped."""
    if not data:
        return b"\x00", "empty->zero byte"
    buf = bytearray(data)
    n = int(rng.integers(1, 17))
    for _ in range(n):
        i = int(rng.integers(len(buf)))
        buf[i] ^= 1 << int(rng.integers(8))
    return bytes(buf), f"{n} bit flips"


def truncation(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """The file cut at a random length (possibly to nothing)."""
    n = int(rng.integers(0, max(len(data), 1)))
    return data[:n], f"truncated to {n} of {len(data)} bytes"


def splice(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Two random byte ranges swapped, or one range zeroed."""
    if len(data) < 8:
        return data[::-1], "reversed"
    size = int(rng.integers(1, max(len(data) // 4, 2)))
    a, b = sorted(int(x) for x in rng.integers(0, len(data) - size, 2))
    if rng.random() < 0.3 or b - a < size:
        return data[:a] + bytes(size) + data[a + size:], f"{size} bytes zeroed at {a}"
    return data[:a] + data[b:b + size] + data[a + size:b] + data[a:a + size] + data[b + size:], \
        f"{size} bytes swapped at {a} and {b}"


def _graph_of(proto: graph_pb2.GraphDef | meta_graph_pb2.MetaGraphDef) -> graph_pb2.GraphDef:
    return proto.graph_def if isinstance(proto, meta_graph_pb2.MetaGraphDef) else proto


def proto_swap(data: bytes, rng: np.random.Generator, kind: str = "graph") -> tuple[bytes, str]:
    """A GraphDef or MetaGraphDef (binary or text) with node fields swapped between two nodes, or damaged."""
    proto: graph_pb2.GraphDef | meta_graph_pb2.MetaGraphDef = \
        meta_graph_pb2.MetaGraphDef() if kind == "meta" else graph_pb2.GraphDef()
    text = False
    try:
        proto.ParseFromString(data)
    except message.DecodeError:
        text_format.Parse(data.decode("utf-8"), proto)
        text = True
    graph = _graph_of(proto)
    nodes = graph.node
    if len(nodes) < 2:
        return bit_flips(data, rng)
    i, j = (int(x) for x in rng.choice(len(nodes), 2, replace=False))
    a, b = nodes[i], nodes[j]
    choice = int(rng.integers(9 if kind == "meta" else 8))
    if choice == 0:
        a.op, b.op = b.op, a.op
        label = f"ops of {a.name} and {b.name} swapped"
    elif choice == 1:
        ia, ib = list(a.input), list(b.input)
        del a.input[:], b.input[:]
        a.input.extend(ib)
        b.input.extend(ia)
        label = f"inputs of {a.name} and {b.name} swapped"
    elif choice == 2:
        a.name, b.name = b.name, a.name
        label = f"names {a.name} and {b.name} swapped"
    elif choice == 3:
        attrs = copy.deepcopy(dict(b.attr))
        a.attr.clear()
        for k, v in attrs.items():
            a.attr[k].CopyFrom(v)
        label = f"attrs of {b.name} copied to {a.name}"
    elif choice == 4:
        label = _damage_shape(a, rng)
    elif choice == 5:
        del nodes[i]
        label = f"node {a.name} deleted"
    elif choice == 6:
        for value in a.attr.values():
            if value.WhichOneof("value") == "type":
                value.type = int(rng.integers(0, 30))
        label = f"dtypes of {a.name} randomised"
    elif choice == 7:
        a.input.append(f"{b.name}:{int(rng.integers(0, 5))}")
        label = f"{b.name} added as an input of {a.name}"
    else:  # meta only: the saver or a collection damaged
        meta = proto  # type: ignore[assignment]
        if meta.HasField("saver_def") and rng.random() < 0.5:  # type: ignore[union-attr]
            meta.saver_def.restore_op_name, meta.saver_def.filename_tensor_name = (  # type: ignore[union-attr]
                meta.saver_def.filename_tensor_name, meta.saver_def.restore_op_name)  # type: ignore[union-attr]
            label = "saver_def names swapped"
        else:
            for collection in meta.collection_def.values():  # type: ignore[union-attr]
                if collection.WhichOneof("kind") == "bytes_list" and collection.bytes_list.value:
                    collection.bytes_list.value[0] = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
            label = "collections garbled"
    out = text_format.MessageToString(proto).encode() if text else proto.SerializeToString()
    return out, label


def _damage_shape(node: object, rng: np.random.Generator) -> str:
    for key in ("shape", "value"):
        if key in node.attr:  # type: ignore[attr-defined]
            value = node.attr[key]  # type: ignore[attr-defined]
            shape = value.shape if key == "shape" else value.tensor.tensor_shape
            size = int(rng.choice([-7, 0, 10 ** 6, 10 ** 12, 2 ** 62]))
            if shape.dim:
                shape.dim[int(rng.integers(len(shape.dim)))].size = size
            else:
                shape.dim.add().size = size
            return f"a dim of {node.name}'s {key} set to {size}"  # type: ignore[attr-defined]
    return f"{node.name} left alone (no shape)"  # type: ignore[attr-defined]


NASTY = [None, -1, 0, 1, 2 ** 64, 10 ** 30, 1e308, float("inf"), float("nan"), "nan", "-inf", "", "x" * 300, [], {},
         [1, 2], {"a": 1}, True, False, "1e999", "../..", "/dev/full", "/proc/self/mem", [[[[]]]], "\x00"]


def yaml_fields(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """A YAML mapping with two values swapped, a value replaced by a nasty one, a key dropped or an unknown key."""
    config = yaml.safe_load(data.decode("utf-8"))
    keys = sorted(config)
    choice = int(rng.integers(5))
    if choice == 0 and len(keys) > 1:
        a, b = (keys[int(i)] for i in rng.choice(len(keys), 2, replace=False))
        config[a], config[b] = config[b], config[a]
        label = f"values of {a} and {b} swapped"
    elif choice in (1, 2):
        key = keys[int(rng.integers(len(keys)))]
        value = NASTY[int(rng.integers(len(NASTY)))]
        if isinstance(config[key], list) and config[key] and isinstance(config[key][0], dict) and rng.random() < 0.7:
            inner = config[key][0]
            sub = sorted(inner)[int(rng.integers(len(inner)))]
            inner[sub] = value
            label = f"{key}[0].{sub} set to {value!r:.40}"
        else:
            config[key] = value
            label = f"{key} set to {value!r:.40}"
    elif choice == 3:
        key = keys[int(rng.integers(len(keys)))]
        del config[key]
        label = f"{key} deleted"
    else:
        config["no_such_key"] = 1
        label = "unknown key added"
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode("utf-8"), label


def alias_bomb(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """The YAML with a billion-laughs alias bomb in one of its list values."""
    levels = int(rng.integers(5, 10))
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    bomb = "\n".join(lines) + f"\ntrainable_scopes: *a{levels - 1}\n"
    kept = "\n".join(line for line in data.decode("utf-8").splitlines() if not line.startswith("trainable_scopes"))
    return (kept + "\n" + bomb).encode("utf-8"), f"alias bomb of 9^{levels}"


STATE_PATHS = ["/etc/passwd", "../../elsewhere/model.ckpt", "", "model.ckpt-99999", "\x00\x01", "a" * 5000,
               "/dev/null", ".", "/"]


def state_file(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """A `checkpoint` state file naming another path, garbled, or cut."""
    choice = int(rng.integers(3))
    if choice == 0:
        path = STATE_PATHS[int(rng.integers(len(STATE_PATHS)))]
        return f'model_checkpoint_path: "{path}"\nall_model_checkpoint_paths: "{path}"\n'.encode(), \
            f"state names {path!r:.40}"
    if choice == 1:
        return bit_flips(data, rng)
    return truncation(data, rng)
