"""Fine-tuning: configuration, the task model, frozen batch norm, the train op, the loop and the run directory.

| module      | what it owns                                                                                   |
|-------------|------------------------------------------------------------------------------------------------|
| `config`    | `FinetuneConfig`: defaults, YAML, flags generated from the fields, every validation            |
| `task`      | the task model for a source (slim net, `.meta`, frozen graph), the restore choice, train ops   |
| `batchnorm` | the one frozen-batch-norm rule: update ops of frozen layers dropped, inference-mode rewiring   |
| `random_ops`| the training graph's random ops made stateless in (seed, step): resumed runs are exact         |
| `train_op`  | one training step: optimizer groups, learning-rate multipliers, clipping, element-wise masks   |
| `grouped_apply` | the update half of a step as one `Optimizer` (one process, or inside `SyncReplicasOptimizer`) |
| `loop`      | `run_finetune`: restore, train in phases, checkpoints, events, metrics                         |
| `run_dir`   | the run directory's format, written by fine-tuning and read by export                          |
| `cluster`   | a run as one task of a ps/worker cluster: flags or TF_CONFIG, placement, the chief's updates   |
| `local_cluster` | `tf1tune cluster`: every task of a cluster as a process on localhost                       |

Modules are imported by name (`from tf1tune.train.loop import run_finetune`), so that importing the package
imports nothing heavy.
"""
