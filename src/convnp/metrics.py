"""Classification metrics computed from labels and predictions (NumPy only, no plotting)."""
import numpy as np


def confusion_matrix(y_true, y_pred, num_classes=None):
    """y_true, y_pred: (N,) class indices -> (K, K) int64 counts: rows are the true classes, columns the
    predicted ones; K = ``num_classes``, else one more than the largest label seen."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {y_true.shape} true labels but {y_pred.shape} predictions")
    k = num_classes or int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix
