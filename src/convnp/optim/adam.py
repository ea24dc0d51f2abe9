"""Adam and AdamW (torch.optim.Adam / torch.optim.AdamW, same formulas and state)."""
import math
from functools import partial

from ..backend import get_array_module
from .optimizer import Optimizer, in_pieces


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False)``

    PyTorch's update, for each parameter p with gradient grad, at its step t = 1, 2, ...:

        g = -grad if maximize else grad
        p = p * (1 - lr * weight_decay)            if decoupled_weight_decay (AdamW)
        g = g + weight_decay * p                   otherwise (L2 penalty inside the gradient)
        m = beta1 * m + (1 - beta1) * g            first moment   (computed as m += (1 - beta1)(g - m))
        v = beta2 * v + (1 - beta2) * g^2          second moment
        v_max = max(v_max, v)                      if amsgrad, and v_max is used for v below
        bc1 = 1 - beta1^t,  bc2 = 1 - beta2^t      bias corrections (m and v start at zero)
        denom = sqrt(v) / sqrt(bc2) + eps
        p = p - (lr / bc1) * m / denom

    State per parameter: 'step', 'exp_avg' (m), 'exp_avg_sq' (v), and 'max_exp_avg_sq' with amsgrad.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 maximize=False, decoupled_weight_decay=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One update of every parameter whose ``.grad`` is not None.  Returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                xp = get_array_module(p.data)
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                in_pieces(partial(adam_update, data=p.data, g=g, state=state, group=group), p.data)
        return loss


def adam_update(rows, data, g, state, group):
    """Adam's formulas (``Adam``) on rows ``rows`` of the parameter ``data`` with gradient ``g``
    (``in_pieces`` shares the rows out among threads), in place in one scratch array: the same
    roundings as writing them out, without the seven temporary arrays that would allocate (and
    page-fault) each step."""
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    xp = get_array_module(data)
    p, g = data[rows], g[rows]
    if weight_decay != 0:
        if group["decoupled_weight_decay"]:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m, v = state["exp_avg"][rows], state["exp_avg_sq"][rows]
    scratch = xp.subtract(g, m)
    scratch *= 1 - beta1
    m += scratch                                   # m += (1 - beta1) (g - m)
    v *= beta2
    xp.multiply(g, 1 - beta2, out=scratch)
    scratch *= g
    v += scratch                                   # v = beta2 v + (1 - beta2) g^2
    if group["amsgrad"]:
        v_max = state["max_exp_avg_sq"][rows]
        xp.maximum(v_max, v, out=v_max)
        v = v_max
    bias_correction1 = 1 - beta1 ** state["step"]
    bias_correction2 = 1 - beta2 ** state["step"]
    xp.sqrt(v, out=scratch)
    scratch /= math.sqrt(bias_correction2)
    scratch += eps                                 # denom
    xp.divide(m, scratch, out=scratch)
    scratch *= lr / bias_correction1
    p -= scratch                                   # p -= (lr / bc1) m / denom


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False)``

    Adam with decoupled weight decay (Loshchilov & Hutter): the parameter shrinks by
    ``p = p * (1 - lr * weight_decay)`` before the Adam step, instead of ``weight_decay * p`` being
    added to the gradient, where Adam's per-coordinate scaling would weaken it.  See ``Adam``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
