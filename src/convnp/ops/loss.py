"""Softmax, log-softmax and the losses, computed stably from logits."""
from ..backend import get_array_module
from ..function import Function


def log_softmax_array(x, axis=-1):
    """log softmax = x - logsumexp(x), with the max subtracted first so exp never overflows."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """x: (..., K) -> y = x - log sum_k exp(x_k) along ``axis``;  dx = dy - softmax(x) * sum(dy)"""

    def forward(self, x, axis=-1):
        y = log_softmax_array(x, axis)
        self.axis = axis
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        xp = get_array_module(dy)
        return dy - xp.exp(y) * dy.sum(axis=self.axis, keepdims=True)


class Softmax(Function):
    """x: (..., K) -> y = exp(x) / sum exp(x) along ``axis``;  dx = y * (dy - sum(dy * y))"""

    def forward(self, x, axis=-1):
        y = get_array_module(x).exp(log_softmax_array(x, axis))
        self.axis = axis
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))


class CrossEntropy(Function):
    """logits: (N, K), target: (N,) integer classes -> loss: scalar ('mean', 'sum') or (N,) ('none')

    With label smoothing s, the target distribution is q = (1 - s) onehot(target) + s / K and
        loss_n = -sum_k q_k log softmax(logits_n)_k
    Gradient (the famous one): dlogits_n = (softmax(logits_n) - q_n) * dloss_n  (/ N for 'mean').
    log softmax is computed from the logits directly, so +-1e4 logits give finite losses.
    Targets are validated by ``convnp.functional.cross_entropy`` before they get here.
    """

    def forward(self, logits, target, reduction="mean", label_smoothing=0.0):
        xp = get_array_module(logits)
        n, k = logits.shape
        log_probs = log_softmax_array(logits, axis=1)
        picked = log_probs[xp.arange(n), target]
        loss = -(1 - label_smoothing) * picked
        if label_smoothing:
            loss = loss - label_smoothing / k * log_probs.sum(axis=1)
        self.save_for_backward(log_probs, target)
        self.reduction, self.smoothing = reduction, label_smoothing
        if reduction == "mean":
            return loss.mean()
        if reduction == "sum":
            return loss.sum()
        return loss

    def backward(self, dy):
        log_probs, target = self.saved
        xp = get_array_module(log_probs)
        n, k = log_probs.shape
        dlogits = xp.exp(log_probs)
        dlogits[xp.arange(n), target] -= 1 - self.smoothing
        if self.smoothing:
            dlogits -= self.smoothing / k
        if self.reduction == "mean":
            dlogits *= dy / n
        elif self.reduction == "sum":
            dlogits *= dy
        else:
            dlogits *= dy[:, None]
        return dlogits, None


class MSELoss(Function):
    """input, target: same shape -> mean (or sum, or elementwise) of (input - target)^2

    dinput = 2 (input - target) dy / n for 'mean';  dtarget = -dinput."""

    def forward(self, x, target, reduction="mean"):
        diff = x - target
        self.save_for_backward(diff)
        self.reduction = reduction
        squared = diff * diff
        if reduction == "mean":
            return squared.mean()
        if reduction == "sum":
            return squared.sum()
        return squared

    def backward(self, dy):
        (diff,) = self.saved
        scale = 2 / diff.size if self.reduction == "mean" else 2
        dx = diff * (dy * scale)
        return (dx if self.needs_input_grad[0] else None,
                -dx if self.needs_input_grad[1] else None)
