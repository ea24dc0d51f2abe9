"""Classification metrics computed from labels and predictions (NumPy only, no plotting), and the text
tables ``convnp evaluate`` prints: ``format_per_class`` (accuracy, precision, recall, F1) and
``format_confusion``."""
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


def precision_recall_f1(confusion):
    """Per class (precision, recall, F1), each an array, from a confusion matrix (rows: true class):
    scikit-learn's ``precision_recall_fscore_support`` (0 where a class is never predicted or present)
    when scikit-learn is installed, else the same formulas in NumPy."""
    confusion = np.asarray(confusion)
    k = len(confusion)
    try:
        from sklearn.metrics import precision_recall_fscore_support
    except ImportError:
        true_positive = np.diag(confusion).astype(np.float64)
        predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
        precision = np.divide(true_positive, predicted, out=np.zeros(k), where=predicted > 0)
        recall = np.divide(true_positive, actual, out=np.zeros(k), where=actual > 0)
        total = precision + recall
        return precision, recall, np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    rows, cols = np.nonzero(confusion)
    counts = confusion[rows, cols]
    y_true, y_pred = np.repeat(rows, counts), np.repeat(cols, counts)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=range(k), zero_division=0)
    return precision, recall, f1


def format_per_class(metrics, classes):
    support = metrics["confusion"].sum(axis=1)
    precision, recall, f1 = precision_recall_f1(metrics["confusion"])
    width = max(len("class"), *(len(f"{k} {name}") for k, name in enumerate(classes)))
    lines = ["per-class accuracy:", f"  {'class':<{width}}  accuracy  images  precision  recall      F1"]
    for k, name in enumerate(classes):
        label = str(k) if name == str(k) else f"{k} {name}"
        accuracy = metrics["per_class_accuracy"][k]
        shown = "       -" if accuracy != accuracy else f"{accuracy * 100:7.2f}%"
        lines.append(f"  {label:<{width}}  {shown}  {support[k]:6d}  {precision[k]:9.4f}  {recall[k]:6.4f}  "
                     f"{f1[k]:6.4f}")
    return "\n".join(lines)


def format_confusion(confusion):
    k = len(confusion)
    width = max(4, len(str(confusion.max())) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted class):",
             "true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{confusion[i, j]:>{width}}" for j in range(k)))
    return "\n".join(lines)
