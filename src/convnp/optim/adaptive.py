"""Adadelta, RMSprop and Adagrad (torch.optim's, same formulas, defaults and state names)."""
from functools import partial

from ..backend import get_array_module
from .optimizer import Optimizer, in_pieces, penalised_gradient


def _check(name, value, low=0.0, high=None):
    if not low <= value or (high is not None and not value <= high):
        raise ValueError(f"Invalid {name} value: {value}")


class Adadelta(Optimizer):
    """``Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False)`` (Zeiler 2012):

        v = rho v + (1 - rho) g^2                       'square_avg'
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho u + (1 - rho) delta^2                   'acc_delta'
        p = p - lr * delta
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False):
        _check("learning rate", lr)
        _check("rho", rho, 0.0, 1.0)
        _check("epsilon", eps)
        _check("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                xp = get_array_module(p.data)
                g = penalised_gradient(p, group)
                state = self.state.setdefault(p, {})
                if not state:
                    state.update(step=0, square_avg=xp.zeros_like(p.data), acc_delta=xp.zeros_like(p.data))
                state["step"] += 1
                in_pieces(partial(adadelta_update, data=p.data, g=g, state=state, group=group), p.data)
        return loss


def adadelta_update(rows, data, g, state, group):
    """Adadelta's formulas (``Adadelta``) on rows ``rows`` of the parameter ``data`` with gradient
    ``g`` (``in_pieces`` shares the rows out among threads), in place in two scratch arrays (as Adam)."""
    lr, rho, eps = group["lr"], group["rho"], group["eps"]
    xp = get_array_module(data)
    v, u, g = state["square_avg"][rows], state["acc_delta"][rows], g[rows]
    scratch = xp.multiply(g, 1 - rho)
    scratch *= g
    v *= rho
    v += scratch                                    # v = rho v + (1 - rho) g^2
    delta = xp.add(u, eps)
    xp.sqrt(delta, out=delta)
    xp.add(v, eps, out=scratch)
    xp.sqrt(scratch, out=scratch)
    delta /= scratch
    delta *= g                                      # delta = sqrt(u + eps) / sqrt(v + eps) g
    xp.multiply(delta, 1 - rho, out=scratch)
    scratch *= delta
    u *= rho
    u += scratch                                    # u = rho u + (1 - rho) delta^2
    delta *= lr
    data[rows] -= delta


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
    maximize=False)``:

        v = alpha v + (1 - alpha) g^2                   'square_avg'
        m = alpha m + (1 - alpha) g                     'grad_avg' (centered only)
        d = sqrt(v - m^2) + eps  if centered, else sqrt(v) + eps
        b = momentum b + g / d;  p = p - lr b           'momentum_buffer' (momentum > 0)
        p = p - lr g / d                                otherwise
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False):
        _check("learning rate", lr)
        _check("epsilon", eps)
        _check("momentum", momentum)
        _check("weight_decay", weight_decay)
        _check("alpha", alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                xp = get_array_module(p.data)
                state = self.state.setdefault(p, {})
                if not state:
                    state.update(step=0, square_avg=xp.zeros_like(p.data))
                    if group["momentum"] > 0:
                        state["momentum_buffer"] = xp.zeros_like(p.data)
                    if group["centered"]:
                        state["grad_avg"] = xp.zeros_like(p.data)
                state["step"] += 1
                in_pieces(partial(rmsprop_update, p=p, state=state, group=group), p.data)
        return loss


def rmsprop_update(rows, p, state, group):
    """RMSprop's formulas (``RMSprop``) on rows ``rows`` of the parameter ``p`` (``in_pieces`` shares
    the rows out among threads)."""
    lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
    data = p.data
    xp = get_array_module(data)
    g = penalised_gradient(p, group, rows)
    v = state["square_avg"][rows]
    v *= alpha
    v += (1 - alpha) * g * g
    if group["centered"]:
        m = state["grad_avg"][rows]
        m *= alpha
        m += (1 - alpha) * g
        denom = xp.sqrt(v - m * m) + eps
    else:
        denom = xp.sqrt(v) + eps
    if momentum > 0:
        buf = state["momentum_buffer"][rows]
        buf *= momentum
        buf += g / denom
        data[rows] -= lr * buf
    else:
        data[rows] -= lr * (g / denom)


class Adagrad(Optimizer):
    """``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
    maximize=False)``:

        s = s + g^2                                     'sum' (starts at initial_accumulator_value)
        p = p - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)

    Like PyTorch, the state ('step' 0 and 'sum') exists from construction.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 maximize=False):
        _check("learning rate", lr)
        _check("lr_decay", lr_decay)
        _check("weight_decay", weight_decay)
        _check("initial_accumulator_value", initial_accumulator_value)
        _check("epsilon", eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))
        for group in self.param_groups:
            for p in group["params"]:
                xp = get_array_module(p.data)
                self.state[p] = {"step": 0, "sum": xp.full_like(p.data, group["initial_accumulator_value"])}

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                xp = get_array_module(p.data)
                state = self.state.setdefault(p, {"step": 0, "sum": xp.full_like(
                    p.data, group["initial_accumulator_value"])})
                state["step"] += 1
                in_pieces(partial(adagrad_update, p=p, state=state, group=group), p.data)
        return loss


def adagrad_update(rows, p, state, group):
    """Adagrad's formulas (``Adagrad``) on rows ``rows`` of the parameter ``p`` (``in_pieces`` shares
    the rows out among threads)."""
    data = p.data
    xp = get_array_module(data)
    g = penalised_gradient(p, group, rows)
    clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
    total = state["sum"][rows]
    total += g * g
    data[rows] -= clr * (g / (xp.sqrt(total) + group["eps"]))
