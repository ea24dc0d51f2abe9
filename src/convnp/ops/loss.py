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


# --- more losses (torch.nn.functional's) ---------------------------------------------------------------------
def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _reduced_grad(dy, shape, reduction, dtype):
    """dL/d(elementwise loss) for the upstream gradient dy of the reduced loss."""
    xp = get_array_module(dy)
    if reduction == "none":
        return dy
    count = 1
    for n in shape:
        count *= n
    scale = dy / count if reduction == "mean" else dy
    return xp.broadcast_to(xp.asarray(scale, dtype=dtype), shape)


class NLLLoss(Function):
    """log_probs: (N, C) or (N, C, d1, ...), target: (N,) or (N, d1, ...) class indices ->
    loss_i = -weight[t_i] log_probs[i, t_i] (0 where t_i == ignore_index);
    'mean' divides the sum by sum_i weight[t_i] over the targets not ignored (PyTorch's weighted mean).
    dlog_probs[i, t_i] = -weight[t_i] * (dy, / that sum for 'mean'), zero elsewhere."""

    def forward(self, log_probs, target, weight=None, ignore_index=-100, reduction="mean"):
        xp = get_array_module(log_probs)
        self.shape, self.reduction = log_probs.shape, reduction
        c = log_probs.shape[1]
        moved = xp.moveaxis(log_probs, 1, -1).reshape(-1, c)  # (M, C), M = N d1 d2 ...
        flat_target = target.reshape(-1)
        keep = flat_target != ignore_index
        safe = xp.where(keep, flat_target, 0)
        w = (xp.ones(c, dtype=log_probs.dtype) if weight is None else weight.astype(log_probs.dtype))[safe] * keep
        rows = xp.arange(len(safe))
        self.save_for_backward(rows, safe, w)
        loss = -w * moved[rows, safe]
        self.total_weight = w.sum()
        self.target_shape = target.shape
        if reduction == "mean":
            return loss.sum() / self.total_weight
        if reduction == "sum":
            return loss.sum()
        return loss.reshape(target.shape)

    def backward(self, dy):
        rows, safe, w = self.saved
        xp = get_array_module(dy)
        n, c = self.shape[0], self.shape[1]
        grad = xp.zeros((len(safe), c), dtype=w.dtype)
        if self.reduction == "mean":
            scale = dy / self.total_weight
        elif self.reduction == "sum":
            scale = dy
        else:
            scale = dy.reshape(-1)
        grad[rows, safe] = -w * scale
        rest = self.shape[2:]
        return xp.moveaxis(grad.reshape((n,) + rest + (c,)), -1, 1), None


class BCELoss(Function):
    """probabilities x, target t in [0, 1], same shape -> -w (t log x + (1 - t) log(1 - x)), the logs
    clamped at -100 like PyTorch's;  dx = w (x - t) / max(x (1 - x), 1e-12)"""

    def forward(self, x, target, weight=None, reduction="mean"):
        xp = get_array_module(x)
        log_x = xp.maximum(xp.log(x), -100)
        log_1mx = xp.maximum(xp.log1p(-x), -100)
        w = 1 if weight is None else weight
        self.save_for_backward(x, target, w)
        self.reduction = reduction
        return _reduce(-w * (target * log_x + (1 - target) * log_1mx), reduction).astype(x.dtype, copy=False)

    def backward(self, dy):
        x, target, w = self.saved
        xp = get_array_module(x)
        grad = _reduced_grad(dy, x.shape, self.reduction, x.dtype)
        dx = grad * w * (x - target) / xp.maximum(x * (1 - x), x.dtype.type(1e-12))
        return dx.astype(x.dtype, copy=False), None


class BCEWithLogitsLoss(Function):
    """logits x, target t, same shape -> w ((1 - t) x + l softplus(-x)), l = 1 + (pos_weight - 1) t,
    computed stably (softplus(-x) = log(1 + e^-|x|) + max(-x, 0));
    dx = w ((1 - t) - l sigmoid(-x))  (= w (sigmoid(x) - t) without pos_weight)"""

    def forward(self, x, target, weight=None, pos_weight=None, reduction="mean"):
        xp = get_array_module(x)
        l = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
        w = 1 if weight is None else weight
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
        self.save_for_backward(x, target, w, l)
        self.reduction = reduction
        return _reduce(w * ((1 - target) * x + l * softplus_neg), reduction).astype(x.dtype, copy=False)

    def backward(self, dy):
        x, target, w, l = self.saved
        xp = get_array_module(x)
        e = xp.exp(-xp.abs(x))
        sigmoid_neg = xp.where(x >= 0, e / (1 + e), 1 / (1 + e))
        grad = _reduced_grad(dy, x.shape, self.reduction, x.dtype)
        return (grad * w * ((1 - target) - l * sigmoid_neg)).astype(x.dtype, copy=False), None


class L1Loss(Function):
    """x, target -> |x - target| (mean/sum/none);  dx = sign(x - target) dy (/ n), dtarget = -dx"""

    def forward(self, x, target, reduction="mean"):
        diff = x - target
        self.save_for_backward(diff)
        self.reduction = reduction
        return _reduce(get_array_module(x).abs(diff), reduction)

    def backward(self, dy):
        (diff,) = self.saved
        dx = _reduced_grad(dy, diff.shape, self.reduction, diff.dtype) * get_array_module(diff).sign(diff)
        return (dx if self.needs_input_grad[0] else None, -dx if self.needs_input_grad[1] else None)


class SmoothL1Loss(Function):
    """d = x - target -> 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (Huber / beta);
    dx = d / beta inside, sign(d) outside; dtarget = -dx"""

    def forward(self, x, target, reduction="mean", beta=1.0):
        xp = get_array_module(x)
        diff = x - target
        self.save_for_backward(diff)
        self.reduction, self.beta = reduction, beta
        size = xp.abs(diff)
        if beta == 0:
            return _reduce(size, reduction)
        loss = xp.where(size < beta, 0.5 * diff * diff / beta, size - 0.5 * beta)
        return _reduce(loss.astype(x.dtype, copy=False), reduction)

    def backward(self, dy):
        (diff,) = self.saved
        xp = get_array_module(diff)
        slope = xp.sign(diff) if self.beta == 0 else xp.where(xp.abs(diff) < self.beta, diff / self.beta, xp.sign(diff))
        dx = (_reduced_grad(dy, diff.shape, self.reduction, diff.dtype) * slope).astype(diff.dtype, copy=False)
        return (dx if self.needs_input_grad[0] else None, -dx if self.needs_input_grad[1] else None)
