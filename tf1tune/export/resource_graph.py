"""A TF1 graph cut down to the model and rewritten to resource variables, ready to be wrapped as a TF2 function.

`tf.compat.v1.wrap_function` lifts only resource variables (`VarHandleOp`) out of an imported graph: reference
variables (`VariableV2`, what TF 1.x made, and the `Variable` of TF < 1.0) stay inside the function as
uninitialised state that TF2 code can neither see nor train. So the graph is rewritten node by node, keeping every
computation as it is:

| TF1 node                               | becomes                                                          |
|----------------------------------------|------------------------------------------------------------------|
| `VariableV2` / `Variable`              | `VarHandleOp` of the same name, dtype and shape                   |
| `Identity` of a variable (`x/read`)    | `ReadVariableOp` of the same name                                 |
| `Assign`, `AssignAdd`, `AssignSub`     | `AssignVariableOp`, `AssignAddVariableOp`, `AssignSubVariableOp`  |
| any other op reading a variable        | reads a `ReadVariableOp` inserted before it                       |
| a data consumer of an assign's output  | reads a `ReadVariableOp` that runs after the assign               |

An op that needs a reference input for anything else (`ScatterUpdate`, `CountUpTo`, an `Apply*` optimizer op left in
the cut) cannot be expressed on resource variables: `ExportError` names it. Before the rewrite the graph is cut to
what the model needs (`cut_graph`): every pruned TF2 function captures every variable of the graph it comes from,
so optimizer slots, `global_step` and savers must be gone first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.python.framework import op_def_registry

from tf1tune.errors import ExportError
from tf1tune.export._io import strip_colocation
from tf1tune.graphdef import VARIABLE_OPS, node_name, split_input

REF_VARIABLES = VARIABLE_OPS - {"VarHandleOp"}
_ASSIGNS = {"Assign": "AssignVariableOp", "AssignAdd": "AssignAddVariableOp", "AssignSub": "AssignSubVariableOp"}
_READ_SUFFIX = "/_tf2_read"


def cut_graph(graph_def: graph_pb2.GraphDef, targets: Iterable[str]) -> graph_pb2.GraphDef:
    """The nodes `targets` (op or tensor names) need, through data and control edges, with the function library.

    Colocation hints are dropped (they may name nodes that are cut away).
    """
    nodes = {n.name: n for n in graph_def.node}
    keep: set[str] = set()
    todo = [node_name(t) for t in targets]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in nodes:
            raise ExportError(f"the graph has no node '{name}'")
        keep.add(name)
        todo.extend(split_input(i)[0] for i in nodes[name].input)
    result = graph_pb2.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    result.node.extend(n for n in graph_def.node if n.name in keep)
    return strip_colocation(result)


def variable_nodes(graph_def: graph_pb2.GraphDef) -> list[str]:
    """Names of the variable nodes (reference or resource) of `graph_def`, in graph order."""
    return [n.name for n in graph_def.node if n.op in VARIABLE_OPS]


def _ref_inputs(op_type: str) -> list[bool]:
    """Whether each input argument of `op_type` is a reference (unknown ops: none are)."""
    op_def = op_def_registry.get(op_type)
    return [arg.is_ref for arg in op_def.input_arg] if op_def is not None else []


def _arg_of_input(node: node_def_pb2.NodeDef, position: int) -> int:
    """The index of the op-def input argument that data input `position` of `node` belongs to."""
    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return -1
    seen = 0
    for index, arg in enumerate(op_def.input_arg):
        if arg.number_attr:
            size = node.attr[arg.number_attr].i
        elif arg.type_list_attr:
            size = len(node.attr[arg.type_list_attr].list.type)
        else:
            size = 1
        if position < seen + size:
            return index
        seen += size
    return -1


def _read_node(name: str, variable: str, dtype: int, after: str | None = None) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="ReadVariableOp", input=[variable])
    if after:
        node.input.append(f"^{after}")
    node.attr["dtype"].type = dtype
    return node


def to_resource_variables(graph_def: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """`graph_def` with its reference variables turned into resource variables (see the module docstring).

    Raises:
        ExportError: An op needs a reference input that has no resource-variable form; nothing is changed then.
    """
    refs = {n.name: n.attr["dtype"].type for n in graph_def.node if n.op in REF_VARIABLES}
    if not refs:
        return graph_def
    result = graph_pb2.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    assigns: dict[str, int] = {}  # assign op -> dtype of its variable
    extra: dict[str, node_def_pb2.NodeDef] = {}
    names = {n.name for n in graph_def.node}
    for source in graph_def.node:
        node = result.node.add()
        node.CopyFrom(source)
        node.attr.pop("_output_shapes", None)
        if node.op in REF_VARIABLES:
            dtype, shape = node.attr["dtype"].type, node.attr["shape"].shape
            container, shared = node.attr["container"].s, node.attr["shared_name"].s
            node.op = "VarHandleOp"
            node.attr.clear()
            node.attr["dtype"].type = dtype
            node.attr["shape"].shape.CopyFrom(shape)
            node.attr["container"].s = container
            node.attr["shared_name"].s = shared or node.name.encode()
            continue
        data = [(i, t) for i, t in enumerate(node.input) if not t.startswith("^")]
        reads_var = [(i, t) for i, t in data if split_input(t)[0] in refs]
        if not reads_var:
            continue
        var_of = {i: split_input(t)[0] for i, t in reads_var}
        if node.op == "Identity" and len(data) == 1:
            node.op = "ReadVariableOp"
            dtype = node.attr["T"].type
            del node.attr["T"]
            node.attr["dtype"].type = dtype
            continue
        if node.op in _ASSIGNS and 0 in var_of and len(var_of) == 1:
            dtype = node.attr["T"].type
            node.op = _ASSIGNS[node.op]
            node.attr.clear()
            node.attr["dtype"].type = dtype
            assigns[node.name] = dtype
            continue
        refs_needed = _ref_inputs(node.op)
        for position, text in reads_var:
            arg = _arg_of_input(node, position)
            if 0 <= arg < len(refs_needed) and refs_needed[arg]:
                raise ExportError(
                    f"op '{node.name}' ({node.op}) writes to the reference variable '{var_of[position]}', which TF2 "
                    "cannot express on resource variables; export outputs that do not need it (--outputs)")
            read = var_of[position] + _READ_SUFFIX
            if read not in extra and read not in names:
                extra[read] = _read_node(read, var_of[position], refs[var_of[position]])
            node.input[position] = read + ":0"
    result.node.extend(extra.values())
    _reads_after_assigns(result, assigns)
    return result


def _reads_after_assigns(graph_def: graph_pb2.GraphDef, assigns: dict[str, int]) -> None:
    """Data consumers of a (now output-less) resource assign read the variable after the assign instead."""
    if not assigns:
        return
    target = {n.name: n.input[0] for n in graph_def.node if n.name in assigns}
    added: dict[str, node_def_pb2.NodeDef] = {}
    for node in list(graph_def.node):
        for position, text in enumerate(node.input):
            src, _, control = split_input(text)
            if control or src not in assigns:
                continue
            read = src + _READ_SUFFIX
            if read not in added:
                added[read] = _read_node(read, target[src], assigns[src], after=src)
            node.input[position] = read + ":0"
    graph_def.node.extend(added.values())


def check_wrappable(graph_def: graph_pb2.GraphDef, allowed_refs: Sequence[str] = ()) -> None:
    """Raise `ExportError` when a node still needs a reference tensor (a `RefSwitch`, a `RefEnter`, ...).

    Args:
        graph_def: A graph after `to_resource_variables`.
        allowed_refs: Op types known to be fine.
    """
    for node in graph_def.node:
        if node.op.startswith("Ref") and node.op not in allowed_refs:
            raise ExportError(f"op '{node.name}' ({node.op}) passes a reference variable through TF1 control flow, "
                              "which TF2 functions cannot hold; export outputs that do not need it (--outputs)")
