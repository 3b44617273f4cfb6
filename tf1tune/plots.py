"""Pictures of a model's quality: the confusion matrix and the training curves, as PNG files.

matplotlib draws with its `Agg` backend (no display needed, nothing global switched: each figure is made with
`matplotlib.figure.Figure` directly, never through `pyplot`), into memory, and the PNG is written atomically.
The curves come from a run's own TensorBoard event files, read with TensorBoard's `EventAccumulator`, so the
picture shows exactly what `tensorboard --logdir` shows.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from tf1tune._fs import write_atomic
from tf1tune.errors import Tf1tuneError

_MAX_ANNOTATED = 20  # classes up to which every cell gets its count written in


def _png(figure: object) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)  # type: ignore[attr-defined]
    return buffer.getvalue()


def _write(path: str | os.PathLike[str], data: bytes) -> str:
    target = os.path.abspath(os.fspath(path))
    if not os.path.isdir(os.path.dirname(target)):
        raise Tf1tuneError(f"cannot write '{os.fspath(path)}': directory '{os.path.dirname(target)}' does not exist")
    return write_atomic(target, data)


def confusion_png(matrix: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike[str],
                  title: str = "Confusion matrix") -> str:
    """Draw the confusion matrix (rows: true class, columns: predicted class) into the PNG file `path`.

    Cells are shaded by the fraction of their row (recall per class), and hold the counts when there are at
    most 20 classes.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = len(matrix)
    side = min(3.0 + 0.45 * n, 16.0)
    figure = Figure(figsize=(side + 1.5, side))
    ax = figure.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= _MAX_ANNOTATED:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if shade[i, j] > 0.5 else "black")
    ticks = np.arange(n) if n <= 40 else np.linspace(0, n - 1, 20).astype(int)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([class_names[i] for i in ticks], rotation=90 if n > 10 else 0)
    ax.set_yticklabels([class_names[i] for i in ticks])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    figure.tight_layout()
    return _write(path, _png(figure))


def read_scalars(events_dir: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of the TensorBoard event files in `events_dir`: tag -> `(steps, values)`, sorted by step.

    Read with TensorBoard's own `EventAccumulator`; a step written twice (a resumed run) keeps its last value.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(os.fspath(events_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    result = {}
    for tag in accumulator.Tags().get("scalars", []):
        last = {event.step: event.value for event in accumulator.Scalars(tag)}
        steps = np.array(sorted(last), dtype=np.int64)
        result[tag] = (steps, np.array([last[s] for s in steps], dtype=np.float64))
    return result


def curves_png(events_dir: str | os.PathLike[str], path: str | os.PathLike[str], title: str = "Training") -> str:
    """Loss (left) and accuracy (right: training batches and validation) against steps, into the PNG `path`.

    Raises:
        Tf1tuneError: The event files hold no `loss` scalar (not a `tf1tune finetune` run's events).
    """
    from matplotlib.figure import Figure

    scalars = read_scalars(events_dir)
    if "loss" not in scalars:
        raise Tf1tuneError(f"'{os.fspath(events_dir)}' holds no 'loss' scalars; give a tf1tune run's events folder")
    figure = Figure(figsize=(10, 4))
    loss_ax, acc_ax = figure.subplots(1, 2)
    steps, values = scalars["loss"]
    loss_ax.plot(steps, values, label="training loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(f"{title}: loss")
    loss_ax.grid(alpha=0.3)
    for tag, style in (("accuracy/train_batch", "-"), ("accuracy/validation", "o-")):
        if tag in scalars:
            acc_ax.plot(*scalars[tag], style, label=tag.split("/")[1].replace("_", " "))
    acc_ax.set_xlabel("step")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0.0, 1.02)
    acc_ax.set_title(f"{title}: accuracy")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")
    figure.tight_layout()
    return _write(path, _png(figure))


def write_run_plots(run_dir: str | os.PathLike[str], labels: np.ndarray, predictions: np.ndarray,
                    class_names: Sequence[str], num_classes: int | None = None) -> list[str]:
    """`curves.png` (from the run's `events/`) and `confusion.png` (validation set) in a fine-tuning run directory.

    Args:
        run_dir: The run directory.
        labels: True labels of the validation examples.
        predictions: Predicted labels of the same examples.
        class_names: The name of each class (by index when they are not one per class of the model).
        num_classes: The model's number of classes (default: `len(class_names)`).

    Returns:
        The paths written.
    """
    from sklearn.metrics import confusion_matrix

    run_dir = os.fspath(run_dir)
    if num_classes is not None and len(class_names) != num_classes:
        class_names = [str(i) for i in range(num_classes)]
    matrix = confusion_matrix(labels, predictions, labels=list(range(len(class_names))))
    accuracy = float(np.mean(np.asarray(labels) == np.asarray(predictions))) if len(labels) else 0.0
    written = [confusion_png(matrix, class_names, os.path.join(run_dir, "confusion.png"),
                             title=f"Validation ({len(labels)} images, accuracy {accuracy:.4f})")]
    written.append(curves_png(os.path.join(run_dir, "events"), os.path.join(run_dir, "curves.png")))
    return written
