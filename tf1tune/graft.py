"""Grafting new layers onto a named endpoint, turning frozen constants back into variables, shared layers.

- `graft(handle, endpoint, head)`: build a new head on any tensor of a loaded source (slim net,
  `.meta` graph, frozen `.pb`), under its own scope, from a Python callable or a short declarative spec
  (`"global_pool, dropout(0.2), dense(5), softmax"`). The head's variables are new: they are initialised,
  never restored (see `tf1tune.restore`).
- `unfreeze(handle, names)`: a new handle in which chosen constants of a frozen graph are variables again,
  holding the same values, so that they can be fine-tuned.
- `shared_layer(layer_fn, scope, ...)`: call a slim layer with the variables of a layer already built under
  `scope` while its other settings (stride, padding, rate) differ. It creates no variable of its own, so
  both layers see every update and a checkpoint holds the weights once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import tensorflow as tf
import tf_slim as slim
from tensorflow.core.framework import graph_pb2

from tf1tune.errors import GraftError, first_line
from tf1tune.graphdef import FUSED_BATCH_NORM_OPS, node_name
from tf1tune.handle import ModelHandle
from tf1tune.names import not_found

HeadFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
_LAYER = re.compile(r"^\s*(?P<name>[a-z_0-9]+)\s*(?:\((?P<args>[^()]*)\))?\s*$")
_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor] | None] = {
    "linear": None, "relu": tf.nn.relu, "relu6": tf.nn.relu6, "tanh": tf.nn.tanh, "sigmoid": tf.nn.sigmoid}
SPEC_LAYERS = ("global_pool", "flatten", "dropout(RATE)", "dense(UNITS[, ACTIVATION])",
               "conv1x1(FILTERS[, ACTIVATION])", "relu", "softmax")


@dataclass
class Head:
    """A grafted head.

    Attributes:
        scope: Variable scope holding the head's variables.
        output: The head's last tensor before a `softmax` layer (the logits).
        probabilities: The softmax of `output` when the spec ends in `softmax`, else None.
        variables: The variables the head created (to initialise, and to train).
        is_training: Boolean scalar, default False: feed True while training (dropout).
    """

    scope: str
    output: tf.Tensor
    probabilities: tf.Tensor | None
    variables: list[tf.Variable] = field(default_factory=list)
    is_training: tf.Tensor | None = None


def parse_head_spec(spec: str | Sequence[str]) -> list[tuple[str, list[str]]]:
    """Parse `"global_pool, dropout(0.2), dense(5), softmax"` (or a list of layer strings) into (layer, args).

    Raises:
        GraftError: An unknown layer or malformed entry, with the layers that exist.
    """
    items = _split_top_level(spec) if isinstance(spec, str) else list(spec)
    layers = []
    known = {s.split("(")[0] for s in SPEC_LAYERS}
    for item in items:
        m = _LAYER.match(item)
        if not m or m.group("name") not in known:
            raise GraftError(f"head layer '{item.strip()}' is not understood; layers are: {', '.join(SPEC_LAYERS)}")
        args = [a.strip() for a in (m.group("args") or "").split(",") if a.strip()]
        name = m.group("name")
        if name == "dropout":
            rate = _number(args, 0, "dropout(RATE)", float)
            if not 0.0 <= rate < 1.0:
                raise GraftError(f"dropout(RATE) needs a rate in [0, 1), got {args[0]}")
        elif name in ("dense", "conv1x1"):
            units = _number(args, 0, f"{name}(UNITS[, ACTIVATION])", int)
            if not 1 <= units <= 1_000_000:
                raise GraftError(f"{name}(UNITS) needs 1 to 1,000,000 units, got {units}")
            _activation(args[1] if len(args) > 1 else "linear")
        layers.append((name, args))
    if not layers:
        raise GraftError("the head spec is empty; give layers such as 'global_pool, dense(5), softmax'")
    return layers


def _split_top_level(spec: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in spec:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in parts + [current] if p.strip()]


def _build_spec(layers: list[tuple[str, list[str]]], net: tf.Tensor, is_training: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
    probabilities = None
    for index, (name, args) in enumerate(layers):
        if probabilities is not None:
            raise GraftError("'softmax' must be the last layer of a head spec")
        if name == "global_pool":
            net = tf.reduce_mean(net, axis=list(range(1, net.shape.rank - 1)), name="global_pool") if net.shape.rank > 2 else net
        elif name == "flatten":
            net = slim.flatten(net, scope="flatten")
        elif name == "relu":
            net = tf.nn.relu(net)
        elif name == "dropout":
            rate = float(_number(args, 0, "dropout(RATE)", float))
            if rate > 0:  # no tf.cond: a random op in the graph itself, which fine-tuning makes stateless
                with tf.compat.v1.name_scope(f"dropout_{index}"):
                    net = tf.where(is_training, tf.nn.dropout(net, rate=rate), net, name="dropout")
        elif name in ("dense", "conv1x1"):
            units = _number(args, 0, f"{name}(UNITS[, ACTIVATION])", int)
            activation = _activation(args[1] if len(args) > 1 else "linear")
            if name == "dense":
                if net.shape.rank != 2:
                    net = slim.flatten(net, scope=f"flatten_{index}")
                net = slim.fully_connected(net, units, activation_fn=activation, scope=f"dense_{index}")
            else:
                if net.shape.rank != 4:
                    raise GraftError(f"conv1x1 needs a 4-D input [B, H, W, C], got {net.shape}; graft on a feature map")
                net = slim.conv2d(net, units, [1, 1], activation_fn=activation, normalizer_fn=None, scope=f"conv1x1_{index}")
        elif name == "softmax":
            probabilities = tf.nn.softmax(net, name="probabilities")
    return net, probabilities


def _number(args: list[str], i: int, form: str, kind: type) -> float | int:
    try:
        return kind(args[i])
    except (IndexError, ValueError):
        raise GraftError(f"head layer needs a number: {form}, got ({', '.join(args)})") from None


def _activation(name: str) -> Callable[[tf.Tensor], tf.Tensor] | None:
    if name not in _ACTIVATIONS:
        raise GraftError(f"unknown activation '{name}'; activations are: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def graft(handle: ModelHandle, endpoint: str | tf.Tensor, head: str | Sequence[str] | HeadFn, scope: str = "head") -> Head:
    """Attach new layers to `endpoint` of `handle`'s graph, under `scope`.

    Args:
        handle: Any loaded source.
        endpoint: An endpoint name (`global_pool`), tensor name (`conv3/add:0`) or tensor of the graph.
        head: A spec (`"global_pool, dropout(0.2), dense(5), softmax"`), or a callable
            `fn(features, is_training) -> logits` that builds the layers with tf/slim calls.
        scope: Variable scope of the new layers; must not hold variables yet.

    Returns:
        The `Head`, whose `variables` are the new, uninitialised variables.

    Raises:
        GraftError, NameNotFoundError: a bad spec, a taken scope, or an unknown endpoint.

    Example:
        >>> net = tf1tune.load("slim:digits_cnn", num_classes=None)
        >>> head = graft(net, "global_pool", "global_pool, dense(2), softmax")
    """
    tensor = endpoint if isinstance(endpoint, tf.Tensor) else handle.endpoint(endpoint)
    if tensor.graph is not handle.graph:
        raise GraftError("the endpoint tensor belongs to another graph than the handle's")
    taken = [v.op.name for v in handle.variables if v.op.name.startswith(scope + "/")]
    if taken:
        raise GraftError(f"scope '{scope}' already holds variables ({taken[0]}, ...); choose another head scope")
    layers = None if callable(head) else parse_head_spec(head)
    with handle.graph.as_default():
        before = set(handle.variables)
        with tf.compat.v1.variable_scope(scope):
            is_training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
            if layers is None:
                output, probabilities = head(tensor, is_training), None  # type: ignore[operator]
            else:
                output, probabilities = _build_spec(layers, tensor, is_training)
        created = [v for v in handle.variables if v not in before]
    return Head(scope=scope, output=output, probabilities=probabilities, variables=created, is_training=is_training)


def unfreeze(handle: ModelHandle, names: Sequence[str]) -> ModelHandle:
    """A new handle in which the named constants of a frozen graph are trainable variables again.

    Args:
        handle: A loaded frozen graph (or any graph with `Const` weights).
        names: Const node names (`pred/kernel`) or scopes (`pred`: every float constant under `pred/`).

    Returns:
        A new handle on a new graph: same nodes, the chosen constants replaced by variables of the
        same name, shape, dtype and value (their initializers hold the values). They are trainable, except
        batch norm's moving statistics (the mean and variance inputs of `FusedBatchNorm*`), which stay out of
        training as in the graph they were frozen from.

    Raises:
        NameNotFoundError: A name matches no float constant (the closest constant names are listed).
    """
    graph_def = handle.graph.as_graph_def()
    consts = {n.name: n for n in graph_def.node if n.op == "Const" and n.attr["dtype"].type in (tf.float16.as_datatype_enum, tf.float32.as_datatype_enum, tf.float64.as_datatype_enum, tf.bfloat16.as_datatype_enum)}
    chosen: list[str] = []
    for name in names:
        hits = [c for c in consts if c == name or c.startswith(name.rstrip("/") + "/")]
        if not hits:
            raise not_found("float constant or scope of constants", name, consts)
        chosen += [h for h in hits if h not in chosen]
    handle.check_safe()
    with tf.compat.v1.Session(graph=handle.graph) as sess:
        fetched = sess.run([handle.graph.get_tensor_by_name(f"{c}:0") for c in chosen])
    values = dict(zip(chosen, fetched))
    kept = graph_pb2.GraphDef()
    kept.versions.CopyFrom(graph_def.versions)
    kept.library.CopyFrom(graph_def.library)
    kept.node.extend(n for n in graph_def.node if n.name not in values)
    for node in kept.node:  # colocation hints on the removed constants would name nodes that no longer exist
        if "_class" in node.attr:
            locs = [c for c in node.attr["_class"].list.s if c.decode().removeprefix("loc:@") not in values]
            del node.attr["_class"].list.s[:]
            node.attr["_class"].list.s.extend(locs)
            if not locs:
                del node.attr["_class"]
    graph = tf.Graph()
    with graph.as_default():
        statistics = _batch_norm_statistics(graph_def)
        variables = {name: tf.compat.v1.get_variable(name, initializer=value, trainable=name not in statistics)
                     for name, value in values.items()}
        tf.import_graph_def(kept, name="", input_map={f"{name}:0": v.read_value() for name, v in variables.items()})
    return ModelHandle.from_graph(handle.kind, handle.source, graph, tensorflow_version=handle.tensorflow_version,
                                  repairs=list(handle.repairs), extra={**handle.extra, "unfrozen": sorted(values)},
                                  risks=list(handle.risks), allowed_ops=handle.allowed_ops)


def _batch_norm_statistics(graph_def: graph_pb2.GraphDef) -> set[str]:
    """Names of the nodes that feed a fused batch norm its mean and variance (inputs 3 and 4), through Identity ops."""
    by_name = {n.name: n for n in graph_def.node}
    found: set[str] = set()
    for node in graph_def.node:
        if node.op in FUSED_BATCH_NORM_OPS:
            for name in node.input[3:5]:
                name = node_name(name)
                while name in by_name and by_name[name].op == "Identity":
                    found.add(name)
                    name = node_name(by_name[name].input[0])
                found.add(name)
    return found


def shared_layer(layer_fn: Callable[..., tf.Tensor], scope: str, *args: object, **kwargs: object) -> tf.Tensor:
    """Call the slim layer `layer_fn` with the variables of the layer already built under `scope`.

    The call may differ from the first one in everything that is not a variable (stride, padding,
    rate); it creates no variable, so both layers train the same weights and are saved once.

    Args:
        layer_fn: A slim layer (`slim.conv2d`, `slim.fully_connected`, ...).
        scope: The scope the first layer was built under, relative to the current variable scope.
        *args, **kwargs: The layer's arguments (`scope` and `reuse` are set here).

    Raises:
        NameNotFoundError: No layer with variables under `scope`.
        GraftError: The call would need variables of other shapes than the existing ones.
    """
    graph = tf.compat.v1.get_default_graph()
    current = tf.compat.v1.get_variable_scope().name
    full = f"{current}/{scope}" if current else scope
    existing = [v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES) if v.op.name.startswith(full + "/")]
    if not existing:
        scopes = {v.op.name.rsplit("/", 1)[0] for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
        raise not_found("layer scope with variables", full, scopes)
    count = len(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))
    try:
        output = layer_fn(*args, scope=scope, reuse=True, **kwargs)
    except ValueError as e:
        raise GraftError(f"layer '{full}' cannot be shared with these settings: {first_line(e)}") from e
    if len(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)) != count:
        raise GraftError(f"sharing layer '{full}' created new variables; give the same kernel size, channels and biases")
    return output
