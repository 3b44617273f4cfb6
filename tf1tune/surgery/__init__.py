"""Checkpoint surgery: rename or drop scopes, convert formats and dtypes, merge checkpoints.

Old TF1 checkpoints rarely fit the graph that should use them: the net now lives under another scope, the
optimizer state of a finished run is dead weight, the file is a V1 checkpoint, or the weights are split over two
checkpoints. These functions rewrite a checkpoint into a new V2 checkpoint and never touch the source.

| module            | what it owns                                                                                |
|-------------------|---------------------------------------------------------------------------------------------|
| `rewrite`         | `rename_checkpoint`, `convert_checkpoint`, `merge_checkpoints`: the result planned in full |
| `optimizer_state` | which entries are optimizer slots and the global step                                      |
| `write`           | a V2 checkpoint staged, read back bit for bit, moved into place, its state file updated     |

Every function plans the whole result first and raises `SurgeryError` on any problem before a byte is written.
"""

from tf1tune.surgery.optimizer_state import optimizer_state_names
from tf1tune.surgery.rewrite import CastLoss, SurgeryReport, convert_checkpoint, merge_checkpoints, rename_checkpoint

__all__ = ["CastLoss", "SurgeryReport", "convert_checkpoint", "merge_checkpoints", "optimizer_state_names",
           "rename_checkpoint"]
