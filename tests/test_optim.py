"""convnp.optim against torch.optim: the same parameters and gradient sequence give the same
parameters, and each scheduler gives the same learning rates."""
import warnings

import numpy as np
import pytest
import torch

from convnp.optim import SGD, Adam, AdamW, Optimizer
from convnp.optim.lr_scheduler import CosineAnnealingLR, LinearLR, MultiStepLR, OneCycleLR, StepLR
from convnp.tensor import Tensor

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 20


def _initial_arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def _gradients(dtype, steps=STEPS, seed=1):
    """grads[t][i] for step t and parameter i; the last parameter has no gradient on every third step."""
    rng = np.random.default_rng(seed)
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(steps)]
    for t in range(0, steps, 3):
        grads[t][-1] = None
    return grads


def _convnp_params(arrays):
    return [Tensor(a.copy(), requires_grad=True) for a in arrays]


def _torch_params(arrays):
    return [torch.tensor(a.copy(), requires_grad=True) for a in arrays]


def _run_convnp(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.copy()
        opt.step()
    return [p.data for p in params]


def _run_torch(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


OPTIMIZER_CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, weight_decay=0.01)),
    (SGD, torch.optim.SGD, dict(lr=0.05, weight_decay=0.1, maximize=True)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    (Adam, torch.optim.Adam, dict()),
    (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    (Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1)),
    (Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    (Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.05, maximize=True)),
    (AdamW, torch.optim.AdamW, dict()),
    (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
]
CASE_IDS = [f"{ours.__name__}-{kwargs}" for ours, _, kwargs in OPTIMIZER_CASES]


@pytest.mark.parametrize("ours, theirs, kwargs", OPTIMIZER_CASES, ids=CASE_IDS)
def test_matches_torch_float64(ours, theirs, kwargs):
    arrays, grads = _initial_arrays(np.float64), _gradients(np.float64)
    params = _convnp_params(arrays)
    held = [p.data for p in params]
    result = _run_convnp(ours(params, **kwargs), params, grads)
    torch_params = _torch_params(arrays)
    expected = _run_torch(theirs(torch_params, **kwargs), torch_params, grads)
    for p, a, r, e in zip(params, held, result, expected):
        assert p.data is a  # updated in place: the arrays a model holds see the update
        np.testing.assert_allclose(r, e, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("ours, theirs, kwargs", OPTIMIZER_CASES, ids=CASE_IDS)
def test_matches_torch_float32_and_stays_float32(ours, theirs, kwargs):
    arrays, grads = _initial_arrays(np.float32), _gradients(np.float32)
    params = _convnp_params(arrays)
    opt = ours(params, **kwargs)
    result = _run_convnp(opt, params, grads)
    torch_params = _torch_params(arrays)
    expected = _run_torch(theirs(torch_params, **kwargs), torch_params, grads)
    for r, e in zip(result, expected):
        assert r.dtype == np.float32
        np.testing.assert_allclose(r, e, rtol=1e-5, atol=1e-6)
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


@pytest.mark.parametrize("ours, theirs, kwargs", OPTIMIZER_CASES, ids=CASE_IDS)
def test_state_names_match_torch(ours, theirs, kwargs):
    arrays, grads = _initial_arrays(np.float64), _gradients(np.float64, steps=2)
    params = _convnp_params(arrays)
    opt = ours(params, **kwargs)
    _run_convnp(opt, params, grads)
    torch_params = _torch_params(arrays)
    torch_opt = theirs(torch_params, **kwargs)
    _run_torch(torch_opt, torch_params, grads)
    ours_sd, theirs_sd = opt.state_dict(), torch_opt.state_dict()
    assert sorted(ours_sd["state"]) == sorted(theirs_sd["state"])
    for index, state in theirs_sd["state"].items():
        assert set(ours_sd["state"][index]) == set(state)
    assert [g["params"] for g in ours_sd["param_groups"]] == [g["params"] for g in theirs_sd["param_groups"]]


def test_param_groups_with_their_own_options_match_torch():
    arrays, grads = _initial_arrays(np.float64), _gradients(np.float64)

    def groups(params):
        return [{"params": params[:1], "lr": 0.1}, {"params": params[1:], "momentum": 0.5, "nesterov": True}]

    params = _convnp_params(arrays)
    opt = SGD(groups(params), lr=0.01, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.5]
    result = _run_convnp(opt, params, grads)
    torch_params = _torch_params(arrays)
    expected = _run_torch(torch.optim.SGD(groups(torch_params), lr=0.01, momentum=0.9), torch_params, grads)
    for r, e in zip(result, expected):
        np.testing.assert_allclose(r, e, rtol=1e-12, atol=1e-13)

    params = _convnp_params(arrays)
    adam_groups = [{"params": params[:2], "lr": 0.05}, {"params": params[2:], "betas": (0.5, 0.9)}]
    result = _run_convnp(Adam(adam_groups, lr=0.01, amsgrad=True), params, grads)
    torch_params = _torch_params(arrays)
    torch_groups = [{"params": torch_params[:2], "lr": 0.05}, {"params": torch_params[2:], "betas": (0.5, 0.9)}]
    expected = _run_torch(torch.optim.Adam(torch_groups, lr=0.01, amsgrad=True), torch_params, grads)
    for r, e in zip(result, expected):
        np.testing.assert_allclose(r, e, rtol=1e-12, atol=1e-13)


ROUND_TRIP_CASES = [
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    (AdamW, dict(lr=0.01)),
]


@pytest.mark.parametrize("ours, kwargs", ROUND_TRIP_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_round_trip_continues_exactly(ours, kwargs, dtype):
    arrays, grads = _initial_arrays(dtype), _gradients(dtype)
    params = _convnp_params(arrays)
    uninterrupted = _run_convnp(ours(params, **kwargs), params, grads)

    params = _convnp_params(arrays)
    first = ours(params, **kwargs)
    _run_convnp(first, params, grads[:10])
    saved = first.state_dict()
    assert all(isinstance(index, int) for index in saved["state"])
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1, 2]]
    _run_convnp(first, params, grads[10:12])  # later steps must not change the saved snapshot

    replay = _convnp_params(arrays)  # the parameters as they were when the state was saved
    _run_convnp(ours(replay, **kwargs), replay, grads[:10])
    resumed_params = _convnp_params([p.data for p in replay])
    second = ours(resumed_params, lr=123.0)  # hyperparameters come from the state dict
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == kwargs["lr"]
    resumed = _run_convnp(second, resumed_params, grads[10:])
    for r, u in zip(resumed, uninterrupted):
        assert r.dtype == dtype
        np.testing.assert_array_equal(r, u)


def test_load_state_dict_errors_are_clear():
    arrays, grads = _initial_arrays(np.float64), _gradients(np.float64, steps=2)
    params = _convnp_params(arrays)
    opt = Adam(params, lr=0.01)
    _run_convnp(opt, params, grads)
    saved = opt.state_dict()

    with pytest.raises(ValueError, match="has 1 parameter group.*this optimizer has 2"):
        Adam([{"params": _convnp_params(arrays[:1])}, {"params": _convnp_params(arrays[1:])}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="has 3 parameters in the loaded state dict and 2"):
        Adam(_convnp_params(arrays[:2])).load_state_dict(saved)
    reshaped = [a.reshape(-1) for a in arrays]
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(3, 4\).*\(12,\)"):
        Adam(_convnp_params(reshaped)).load_state_dict(saved)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        Adam(_convnp_params(arrays)).load_state_dict({"state": {}})


def test_load_state_dict_casts_state_to_the_parameter_dtype():
    arrays, grads = _initial_arrays(np.float64), _gradients(np.float64, steps=3)
    params = _convnp_params(arrays)
    opt = SGD(params, lr=0.1, momentum=0.9)
    _run_convnp(opt, params, grads)
    params32 = _convnp_params(_initial_arrays(np.float32))
    opt32 = SGD(params32, lr=0.1)
    opt32.load_state_dict(opt.state_dict())
    assert opt32.param_groups[0]["momentum"] == 0.9
    assert all(opt32.state[p]["momentum_buffer"].dtype == np.float32 for p in params32)


def test_zero_grad():
    params = _convnp_params(_initial_arrays(np.float64))
    opt = SGD(params, lr=0.1)
    for p in params:
        p.grad = np.ones_like(p.data)
    held = [p.grad for p in params]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(params, held):
        assert p.grad is g and not g.any()
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_parameters_without_gradient_are_skipped():
    params = _convnp_params(_initial_arrays(np.float64))
    before = [p.data.copy() for p in params]
    opt = Adam(params, lr=0.1, weight_decay=0.1)
    params[1].grad = np.ones_like(params[1].data)
    opt.step()
    np.testing.assert_array_equal(params[0].data, before[0])
    np.testing.assert_array_equal(params[2].data, before[2])
    assert not np.array_equal(params[1].data, before[1])
    assert list(opt.state) == [params[1]]


def test_step_returns_the_closure_loss():
    params = _convnp_params(_initial_arrays(np.float64))
    assert SGD(params, lr=0.1).step(lambda: 3.5) == 3.5


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=-0.1),
    lambda p: SGD(p, lr=0.1, momentum=-0.5),
    lambda p: SGD(p, lr=0.1, weight_decay=-1e-4),
    lambda p: SGD(p, lr=0.1, nesterov=True),
    lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda p: Adam(p, lr=-1e-3),
    lambda p: Adam(p, eps=-1e-8),
    lambda p: Adam(p, betas=(1.0, 0.999)),
    lambda p: Adam(p, betas=(0.9, -0.1)),
    lambda p: Adam(p, weight_decay=-0.1),
    lambda p: AdamW(p, betas=(0.9, 1.5)),
    lambda p: SGD([], lr=0.1),
    lambda p: SGD([{"params": p[:2]}, {"params": p[1:]}], lr=0.1),
])
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make(_convnp_params(_initial_arrays(np.float64)))


def test_a_single_tensor_is_not_an_iterable_of_parameters():
    with pytest.raises(TypeError, match="wrap it in a list"):
        SGD(Tensor(np.zeros(3), requires_grad=True), lr=0.1)


# --- learning-rate schedulers --------------------------------------------------------------------

def _two_group_optimizers(kind, lrs=(0.1, 0.02), **kwargs):
    """A convnp and a torch optimizer with two parameter groups, for scheduler tests."""
    ours_cls, theirs_cls = {"sgd": (SGD, torch.optim.SGD), "adam": (Adam, torch.optim.Adam)}[kind]
    ours = ours_cls([{"params": [Tensor(np.zeros(2), requires_grad=True)], "lr": lr} for lr in lrs], **kwargs)
    theirs = theirs_cls([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs], **kwargs)
    return ours, theirs


SCHEDULER_CASES = [
    ("sgd", StepLR, torch.optim.lr_scheduler.StepLR, dict(step_size=7, gamma=0.5)),
    ("sgd", MultiStepLR, torch.optim.lr_scheduler.MultiStepLR, dict(milestones=[20, 5, 12, 12], gamma=0.3)),
    ("sgd", LinearLR, torch.optim.lr_scheduler.LinearLR, dict(start_factor=0.25, total_iters=8)),
    ("sgd", LinearLR, torch.optim.lr_scheduler.LinearLR, dict(start_factor=1.0, end_factor=0.1, total_iters=12)),
    ("sgd", CosineAnnealingLR, torch.optim.lr_scheduler.CosineAnnealingLR, dict(T_max=10, eta_min=0.001)),
    ("adam", CosineAnnealingLR, torch.optim.lr_scheduler.CosineAnnealingLR, dict(T_max=7)),
    ("sgd", OneCycleLR, torch.optim.lr_scheduler.OneCycleLR, dict(max_lr=1.0, total_steps=30)),
    ("sgd", OneCycleLR, torch.optim.lr_scheduler.OneCycleLR,
     dict(max_lr=[0.5, 0.2], epochs=3, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear")),
    ("sgd", OneCycleLR, torch.optim.lr_scheduler.OneCycleLR,
     dict(max_lr=0.3, total_steps=30, three_phase=True, div_factor=10.0, final_div_factor=100.0)),
    ("adam", OneCycleLR, torch.optim.lr_scheduler.OneCycleLR, dict(max_lr=0.01, total_steps=30)),
    ("adam", OneCycleLR, torch.optim.lr_scheduler.OneCycleLR,
     dict(max_lr=0.01, total_steps=30, three_phase=True, base_momentum=[0.8, 0.7], max_momentum=0.9)),
    ("sgd", OneCycleLR, torch.optim.lr_scheduler.OneCycleLR, dict(max_lr=0.1, total_steps=30, cycle_momentum=False)),
]
SCHEDULER_IDS = [f"{ours.__name__}-{kind}-{kwargs}" for kind, ours, _, kwargs in SCHEDULER_CASES]


def _momenta(optimizer):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in optimizer.param_groups]


def _schedule(optimizer, scheduler, steps):
    """(lr per group, momentum per group) after construction and after each of ``steps`` steps."""
    history = [(list(scheduler.get_last_lr()), _momenta(optimizer))]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        history.append((list(scheduler.get_last_lr()), _momenta(optimizer)))
        assert history[-1][0] == [g["lr"] for g in optimizer.param_groups]
    return history


@pytest.mark.parametrize("kind, ours, theirs, kwargs", SCHEDULER_CASES, ids=SCHEDULER_IDS)
def test_scheduler_matches_torch(kind, ours, theirs, kwargs):
    steps = 30  # 3 * T_max for the cosine cases: past T_max the lr climbs back, as in torch
    opt, torch_opt = _two_group_optimizers(kind, momentum=0.9) if kind == "sgd" else _two_group_optimizers(kind)
    scheduler, torch_scheduler = ours(opt, **kwargs), theirs(torch_opt, **kwargs)
    assert [g["initial_lr"] for g in opt.param_groups] == [g["initial_lr"] for g in torch_opt.param_groups]
    history, torch_history = _schedule(opt, scheduler, steps), _schedule(torch_opt, torch_scheduler, steps)
    for (lrs, momenta), (torch_lrs, torch_momenta) in zip(history, torch_history):
        np.testing.assert_allclose(lrs, torch_lrs, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(momenta, torch_momenta, rtol=1e-12)
    if ours is OneCycleLR:  # total_steps reached: one more step is an error, in both
        with pytest.raises(ValueError, match="Tried to step 31 times"):
            scheduler.step()
        with pytest.raises(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_scheduler.step()


@pytest.mark.parametrize("kind, ours, theirs, kwargs", SCHEDULER_CASES[::2] + SCHEDULER_CASES[9:10],
                         ids=SCHEDULER_IDS[::2] + SCHEDULER_IDS[9:10])
def test_scheduler_state_dict_round_trip(kind, ours, theirs, kwargs):
    def build():
        opt, _ = _two_group_optimizers(kind, momentum=0.9) if kind == "sgd" else _two_group_optimizers(kind)
        return opt, ours(opt, **kwargs)

    opt, scheduler = build()
    uninterrupted = _schedule(opt, scheduler, 25)

    opt, scheduler = build()
    _schedule(opt, scheduler, 10)
    saved_opt, saved_scheduler = opt.state_dict(), scheduler.state_dict()
    assert "optimizer" not in saved_scheduler

    opt, scheduler = build()
    opt.load_state_dict(saved_opt)
    scheduler.load_state_dict(saved_scheduler)
    assert scheduler.last_epoch == 10 and scheduler.get_last_lr() == uninterrupted[10][0]
    resumed = _schedule(opt, scheduler, 15)
    assert resumed == uninterrupted[10:]


def test_scheduler_construction_sets_the_initial_lr():
    opt = SGD([Tensor(np.zeros(2), requires_grad=True)], lr=0.5, momentum=0.9)
    scheduler = OneCycleLR(opt, max_lr=2.0, total_steps=10)
    assert opt.param_groups[0]["initial_lr"] == 2.0 / 25
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 / 25, rel=1e-12)
    assert opt.param_groups[0]["momentum"] == 0.95
    assert scheduler.last_epoch == 0 and scheduler.base_lrs == [2.0 / 25]
    opt = SGD([Tensor(np.zeros(2), requires_grad=True)], lr=0.5)
    StepLR(opt, step_size=3)
    assert opt.param_groups[0]["initial_lr"] == 0.5


class _NoMomentum(Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))


@pytest.mark.parametrize("make", [
    lambda opt: StepLR(opt, step_size=0),
    lambda opt: CosineAnnealingLR(opt, T_max=0),
    lambda opt: LinearLR(opt, start_factor=0.0),
    lambda opt: LinearLR(opt, end_factor=1.5),
    lambda opt: OneCycleLR(opt, max_lr=0.1),
    lambda opt: OneCycleLR(opt, max_lr=0.1, total_steps=0),
    lambda opt: OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=0),
    lambda opt: OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1.5),
    lambda opt: OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp"),
    lambda opt: OneCycleLR(opt, max_lr=[0.1, 0.2], total_steps=10),
    lambda opt: OneCycleLR(_NoMomentum(opt.param_groups[0]["params"]), max_lr=0.1, total_steps=10),
])
def test_scheduler_bad_arguments_raise_value_error(make):
    opt = SGD([Tensor(np.zeros(2), requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError):
        make(opt)


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="is not an Optimizer"):
        StepLR([Tensor(np.zeros(2), requires_grad=True)], step_size=2)
