"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay (torch.optim.SGD)."""
from functools import partial

from ..backend import get_array_module
from .optimizer import Optimizer, in_pieces, penalised_gradient


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)``

    PyTorch's update, for each parameter p with gradient grad (t counts this parameter's steps):

        g = -grad if maximize else grad
        g = g + weight_decay * p                                  (L2 penalty, if weight_decay)
        buf = g                              at t = 1             (if momentum)
        buf = momentum * buf + (1 - dampening) * g   afterwards
        g = g + momentum * buf if nesterov else buf
        p = p - lr * g

    Note that lr multiplies the buffer, as in PyTorch (Sutskever et al. put it inside the buffer);
    the two agree when lr is constant.  State per parameter: 'momentum_buffer' (when momentum != 0).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One update of every parameter whose ``.grad`` is not None.  Returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer = first = None
                if group["momentum"] != 0:
                    buffer = self.state.setdefault(p, {}).get("momentum_buffer")
                    first = buffer is None
                    if first:  # filled with the first gradient by sgd_update, kept once it is
                        buffer = get_array_module(p.data).empty_like(p.data)
                in_pieces(partial(sgd_update, p=p, buffer=buffer, group=group, first=first), p.data)
                if first:
                    self.state[p]["momentum_buffer"] = buffer
        return loss


def sgd_update(rows, p, buffer, group, first):
    """SGD's formulas (``SGD``) on rows ``rows`` of the parameter ``p`` with momentum buffer
    ``buffer`` (``in_pieces`` shares the rows out among threads); ``first``: the buffer is new, and
    takes the gradient."""
    lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
    g = penalised_gradient(p, group, rows)
    if momentum != 0:
        buf = buffer[rows]
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if group["nesterov"] else buf
    p.data[rows] -= lr * g
