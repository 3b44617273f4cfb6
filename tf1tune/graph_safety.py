"""Know what a graph will do before running it: a scan of a GraphDef against the ops that only compute.

A TF1 graph is a program. Besides arithmetic it can hold ops that read and write files (`ReadFile`, `WriteFile`,
`SaveV2`, readers and file datasets), list directories (`MatchingFiles`), talk to other machines (`Send`,
`RemoteCall`, collectives), call Python (`PyFunc`), print to files (`PrintV2` with a `file://` stream) or stream
tensors to debug URLs (`DebugIdentity`). tf1tune scans every graph it is given (the function library included)
before any session runs it, and refuses one that holds an op outside the list of ops that only compute, with one
line naming each op type and its nodes, unless the user allows those types (`--allow-ops TYPE,...`, a warning).

The list of ops that only compute is built from TensorFlow's own op families (the generated `gen_*_ops` module
each op's wrapper lives in: math, nn, array, control flow, variables, random, image, string, ...), minus the few
ops of those families that touch files, plus the logging and `tf.data` ops that stay in memory.

Two more checks:
- The graph's savers (the `saver_def` of a `.meta`, and others) are not refused when their save and restore ops
  take their path only from a filename placeholder (the path that is fed) and nothing but the saver runs after
  them; a restore op reading a path the graph chose, or one a model output depends on, is refused.
- A tensor whose shape the file fixes (a `Const`, the dims of a `Fill`, a variable's shape) and that would take
  more memory than this machine has is refused before anything allocates it; no option allows that.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from tensorflow.core.framework import graph_pb2, node_def_pb2, types_pb2

from tf1tune.errors import AllowedOpsWarning, BadSourceError, UnsafeGraphError
from tf1tune.graph_savers import ancestors, input_name, saver_ops
from tf1tune.limits import memory_limit

# Op families (the gen_*_ops module of the op's Python wrapper) whose ops only compute, in memory.
_COMPUTE_FAMILIES = frozenset({
    "array", "audio", "batch", "bitwise", "candidate_sampling", "clustering", "composite_tensor", "control_flow",
    "count", "ctc", "cudnn_rnn", "data_flow", "functional", "image", "linalg", "list", "lookup", "manip", "map",
    "math", "nn", "optional", "parsing", "ragged_array", "ragged_conversion", "ragged_math", "random",
    "random_index_shuffle", "resource_variable", "rnn", "set", "sparse", "sparse_csr_matrix", "special_math",
    "spectral", "state", "stateful_random", "stateless_random", "stateless_random_v2", "string", "training",
    "uniform_quant",
})
# Ops of those families that reach outside the process.
_NOT_COMPUTE = frozenset({
    "ImmutableConst", "RecordInput", "FixedUnigramCandidateSampler", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "RemoteCall",
})
# Ops of other families that stay in memory: assertions, stderr printing, summaries as protos, in-memory tf.data.
_EXTRA_COMPUTE = frozenset({
    "Assert", "Print", "Timestamp", "ScalarSummary", "HistogramSummary", "ImageSummary", "AudioSummary",
    "AudioSummaryV2", "MergeSummary", "TensorSummary", "TensorSummaryV2", "ShardedFilename", "ShardedFilespec",
    "NoOp",
    "AnonymousIterator", "AnonymousIteratorV2", "AnonymousIteratorV3", "AnonymousRandomSeedGenerator",
    "AnonymousSeedGenerator", "BatchDataset", "BatchDatasetV2", "ConcatenateDataset", "DatasetCardinality",
    "DeleteIterator", "DeleteRandomSeedGenerator", "DeleteSeedGenerator", "DummySeedGenerator", "FilterDataset",
    "FinalizeDataset", "FlatMapDataset", "InterleaveDataset", "Iterator", "IteratorFromStringHandle",
    "IteratorFromStringHandleV2", "IteratorGetNext", "IteratorGetNextAsOptional", "IteratorGetNextSync",
    "IteratorToStringHandle", "IteratorV2", "MakeIterator", "MapDataset", "ModelDataset", "OneShotIterator",
    "OptimizeDataset", "OptimizeDatasetV2", "OptionsDataset", "PaddedBatchDataset", "PaddedBatchDatasetV2",
    "ParallelBatchDataset", "ParallelFilterDataset", "ParallelInterleaveDatasetV2", "ParallelInterleaveDatasetV3",
    "ParallelInterleaveDatasetV4", "ParallelMapDataset", "ParallelMapDatasetV2", "PrefetchDataset", "RangeDataset",
    "RepeatDataset", "ShardDataset", "ShuffleAndRepeatDataset", "ShuffleAndRepeatDatasetV2", "ShuffleDataset",
    "ShuffleDatasetV2", "ShuffleDatasetV3", "SkipDataset", "SparseTensorSliceDataset", "TakeDataset", "TensorDataset",
    "TensorSliceDataset", "ZipDataset",
})
_PRINT_STREAMS = frozenset({"stderr", "stdout", "log(info)", "log(warning)", "log(error)"})

# What a refused op does, for the error line (op types not named here are "not known to only compute").
_FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "ImmutableConst", "RecordInput", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "FixedUnigramCandidateSampler", "LoadAndRemapMatrix", "GenerateVocabRemapping",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "CacheDataset", "CacheDatasetV2", "FileSystemSetConfiguration",
})
_PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
_NETWORK_OPS = frozenset({"Send", "Recv", "_Send", "_Recv", "_HostSend", "_HostRecv", "RemoteCall"})
# What a graph's queue runners run (tf1tune never starts them): ops only these depend on never run.
_QUEUE_RUNNER_OPS = frozenset({"QueueEnqueue", "QueueEnqueueV2", "QueueEnqueueMany", "QueueEnqueueManyV2",
                               "QueueClose", "QueueCloseV2"})
# Ops whose output shape is their first input, when that input is a constant.
_SHAPE_INPUT_OPS = frozenset({
    "Fill", "Empty", "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
    "StatelessRandomUniform", "StatelessRandomNormal", "StatelessTruncatedNormal", "StatelessRandomUniformInt",
    "StatelessRandomUniformV2", "StatelessRandomNormalV2", "StatelessTruncatedNormalV2", "BroadcastTo",
})
_SHAPE_ATTR_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})


@dataclass(frozen=True)
class Risk:
    """One node of a graph that tf1tune will not run without being told to.

    Attributes:
        op: The op type (`WriteFile`).
        node: The node's name (`function/node` for nodes of the function library).
        reason: What the op does (`writes files`), in words for the error line.
        allowable: False for memory claims, which no option allows.
        dormant: Only the graph's queue runners can run the node, and tf1tune never starts them: reported, not
            refused.
    """

    op: str
    node: str
    reason: str
    allowable: bool = True
    dormant: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`tf1tune inspect --json`, key `risks`)."""
        return asdict(self)


@functools.lru_cache(maxsize=1)
def compute_ops() -> frozenset[str]:
    """The op types tf1tune runs without asking: every registered op of a compute family, and `_EXTRA_COMPUTE`."""
    import tensorflow as tf

    found = set(_EXTRA_COMPUTE)
    for name in dir(tf.raw_ops):
        module = getattr(getattr(tf.raw_ops, name), "__module__", "") or ""
        family = module.rsplit(".", 1)[-1]
        if family.startswith("gen_") and family.endswith("_ops") and family[4:-4] in _COMPUTE_FAMILIES:
            found.add(name)
    return frozenset(found - _NOT_COMPUTE)


def _reason(op: str) -> str:
    if op in _PYTHON_OPS:
        return ("wants to call Python code that is not there (a py_func body is never saved with a graph); "
                "replace the node")
    if op in _FILE_OPS or "Reader" in op or op.endswith("Checkpoints"):
        return "reads or writes files"
    if op.startswith("Debug") or op in ("Copy", "CopyHost"):
        return "sends tensors to debug URLs"
    if op in _NETWORK_OPS or op.startswith(("Collective", "Nccl", "Rpc", "DataService", "TryRpc")):
        return "talks to other processes or machines"
    if "Summary" in op or op == "ImportEvent":
        return "writes summary files"
    if op == "PrintV2":
        return "prints to a file"
    return "is not on tf1tune's list of ops that only compute"


def _all_nodes(graph_def: graph_pb2.GraphDef) -> Iterator[tuple[str, node_def_pb2.NodeDef]]:
    """(display name, node) for the graph's nodes and those of its function library."""
    for node in graph_def.node:
        yield node.name, node
    for function in graph_def.library.function:
        for node in function.node_def:
            yield f"{function.signature.name}/{node.name}", node


def scan(graph_def: graph_pb2.GraphDef, filenames: Iterable[str] = ()) -> list[Risk]:
    """Every node of `graph_def` (and its function library) that does more than compute, or claims more memory
    than this machine has. Nothing is imported or run.

    Args:
        graph_def: The graph as read from the file.
        filenames: Nodes that are fed a checkpoint path (a `saver_def`'s filename tensor), besides placeholders.

    Returns:
        One `Risk` per node, in graph order.
    """
    allowed_types = compute_ops()
    safe_savers = saver_ops(graph_def, frozenset(filenames))
    dormant = _queue_runner_only(graph_def)
    functions = {f.signature.name for f in graph_def.library.function}
    risks = []
    for name, node in _all_nodes(graph_def):
        reason = None
        if node.op == "PrintV2":
            stream = node.attr["output_stream"].s.decode("utf-8", "replace") if "output_stream" in node.attr else "stderr"
            if stream not in _PRINT_STREAMS:
                reason = f"prints to '{stream}'"
        elif node.op not in allowed_types and node.op not in functions and name not in safe_savers \
                and not node.op.startswith("_Fused"):
            reason = _reason(node.op)
        if reason is not None:
            if name in dormant:
                reason += " (only the graph's queue runners run it; tf1tune never starts them)"
            risks.append(Risk(node.op, name, reason, allowable=node.op not in _PYTHON_OPS, dormant=name in dormant))
    risks += memory_risks(graph_def)
    return risks


def _queue_runner_only(graph_def: graph_pb2.GraphDef) -> set[str]:
    """Names of the nodes that only the graph's queue runners (its enqueue and close ops) can make run."""
    nodes = {n.name: n for n in graph_def.node}
    sinks = {name for name, n in nodes.items() if n.op in _QUEUE_RUNNER_OPS}
    if not sinks:
        return set()
    inside = ancestors(nodes, sinks)
    return inside - ancestors(nodes, set(nodes) - inside)


def _dtype_size(dtype: int) -> int:
    import tensorflow as tf

    try:
        return max(tf.as_dtype(dtype).size, 1)
    except (TypeError, ValueError):
        return 8


def memory_risks(graph_def: graph_pb2.GraphDef) -> list[Risk]:
    """Nodes whose shape, fixed in the file, needs more memory than this machine has."""
    consts: dict[str, list[int]] = {}
    for _, node in _all_nodes(graph_def):
        if node.op == "Const":
            consts[node.name] = _const_ints(node)
    limit = memory_limit()
    risks = []
    for name, node in _all_nodes(graph_def):
        claim = None
        if node.op == "Const":
            tensor = node.attr["value"].tensor
            claim = (_elements(d.size for d in tensor.tensor_shape.dim), _dtype_size(tensor.dtype))
        elif node.op in _SHAPE_ATTR_OPS and "shape" in node.attr:
            claim = (_elements(d.size for d in node.attr["shape"].shape.dim), _dtype_size(node.attr["dtype"].type))
        elif node.op in _SHAPE_INPUT_OPS and node.input:
            dims = consts.get(input_name(node.input[0]))
            dtype = next((node.attr[k].type for k in ("dtype", "T", "Tout") if k in node.attr), types_pb2.DT_FLOAT)
            if dims:
                claim = (_elements(dims), _dtype_size(dtype))
        if claim is not None and claim[0] * claim[1] > limit:
            risks.append(Risk(node.op, name, f"claims {_bytes_text(claim[0] * claim[1])}, more than this machine's "
                                             f"{_bytes_text(limit)} of memory: the file is damaged or hostile",
                              allowable=False))
    return risks


def _const_ints(node: node_def_pb2.NodeDef) -> list[int]:
    """The values of a small integer Const (a shape), else []."""
    tensor = node.attr["value"].tensor
    if tensor.dtype not in (types_pb2.DT_INT32, types_pb2.DT_INT64):
        return []
    if _elements(d.size for d in tensor.tensor_shape.dim) > 16:
        return []
    from tensorflow.python.framework import tensor_util

    try:
        return [int(v) for v in tensor_util.MakeNdarray(tensor).ravel()]
    except (ValueError, TypeError):
        return []


def _elements(dims: Iterable[int]) -> int:
    return math.prod(max(int(d), 1) for d in dims) if dims is not None else 0


def _bytes_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def parse_allow_ops(text: str | Iterable[str] | None) -> frozenset[str]:
    """`--allow-ops` values (comma-separated, or repeated) as a set of op types."""
    if text is None:
        return frozenset()
    items = [text] if isinstance(text, str) else list(text)
    return frozenset(s.strip() for item in items for s in str(item).split(",") if s.strip())


def require_safe(risks: Iterable[Risk], source: str, allow_ops: Iterable[str] = ()) -> None:
    """Refuse to run a graph with `risks` (one line naming each op type and its nodes), except allowed types.

    Allowed types give one warning line each. Memory claims and Python calls are refused whatever is allowed;
    dormant risks (run only by the graph's queue runners) are not refused.

    Raises:
        UnsafeGraphError: A risk that is not allowed.
    """
    allowed = frozenset(allow_ops)
    by_type: dict[str, list[Risk]] = {}
    for risk in risks:
        if risk.dormant:
            continue
        by_type.setdefault(risk.op, []).append(risk)
    hard: list[Risk] = []
    refused: list[tuple[str, list[Risk]]] = []
    permitted: list[tuple[str, list[Risk]]] = []
    for op, found in sorted(by_type.items()):
        hard += [r for r in found if not r.allowable]
        soft = [r for r in found if r.allowable]
        if soft:
            (permitted if op in allowed else refused).append((op, soft))
    if hard:
        shown = "; ".join(f"node '{r.node}' ({r.op}) {r.reason}" for r in hard[:3])
        more = f" and {len(hard) - 3} more" if len(hard) > 3 else ""
        raise UnsafeGraphError(f"'{source}' cannot be run: {shown}{more}")
    if refused:
        parts = [f"{op} ({_nodes_text(found)}: {found[0].reason})" for op, found in refused]
        names = ",".join(op for op, _ in refused)
        raise UnsafeGraphError(f"'{source}' holds ops that do more than compute, which tf1tune does not run: "
                               f"{'; '.join(parts)}; inspect them with `tf1tune inspect`, remove them, or pass "
                               f"--allow-ops {names} to run them anyway")
    for op, found in permitted:
        warnings.warn(f"'{source}': running {op} ({_nodes_text(found)}), which {found[0].reason}, as --allow-ops "
                      "says", AllowedOpsWarning, stacklevel=2)


def _nodes_text(found: list[Risk]) -> str:
    names = [f"'{r.node}'" for r in found]
    word = "node" if len(names) == 1 else "nodes"
    return f"{word} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")



def scan_meta(meta: Any, source: str) -> list[Risk]:
    """`scan` of a MetaGraphDef's graph with its saver, before anything imports it.

    Raises:
        BadSourceError: The `saver_def` names nodes the graph does not have (a damaged file).
    """
    saver_def = meta.saver_def if meta.HasField("saver_def") else None
    if saver_def is not None:
        names = {n.name for n in meta.graph_def.node}
        wanted = (saver_def.filename_tensor_name, saver_def.save_tensor_name, saver_def.restore_op_name)
        missing = [t for t in wanted if not t or input_name(t) not in names]
        if missing:
            raise BadSourceError(f"'{source}' is damaged: its saver_def names {', '.join(repr(t) for t in missing)}, "
                                 "which the graph does not have; export the .meta again")
    return scan(meta.graph_def, [input_name(saver_def.filename_tensor_name)] if saver_def else [])
