"""Repairing graphs: what old files need to import on today's TensorFlow, and input pipelines made placeholders.

| module     | what it owns                                                                                       |
|------------|----------------------------------------------------------------------------------------------------|
| `graph`    | reading GraphDef / MetaGraphDef / SavedModel protos (binary or text) and the repairs loaders apply |
| `pipeline` | what an input pipeline is (queues, readers, iterators) and removing it                             |
| `inputs`   | `replace_input`: pipeline tensors replaced by placeholders                                         |
| `files`    | `repair_file`: a repaired `.meta` / `.pb`, checked before it is moved into place                   |
"""

from tf1tune.repair.files import repair_file
from tf1tune.repair.inputs import NewInput, replace_input, strip_device_placements, strip_unknown_attrs
from tf1tune.repair.pipeline import is_pipeline_op

__all__ = ["NewInput", "is_pipeline_op", "repair_file", "replace_input", "strip_device_placements", "strip_unknown_attrs"]
