"""The naive loop versions in convnp.reference against PyTorch (forward and autograd), in float64."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convnp import reference as ref


def _torch_grads(fn, dy, *arrays):
    """Run fn on float64 torch leaves made from arrays, backprop dy; return (y, [grads])."""
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*leaves)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), [leaf.grad.numpy() for leaf in leaves]


def _assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


# --- convolution ---------------------------------------------------------------------------------

# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups, bias)
CONV_CASES = [
    (2, 3, 5, 5, 4, 3, 1, 0, 1, 1, True),             # the textbook case
    (2, 3, 7, 6, 2, (3, 2), 2, 1, 1, 1, True),        # non-square kernel and input, stride 2
    (1, 2, 8, 7, 3, (2, 3), (3, 2), (2, 1), 1, 1, False),  # (H + 2p - k) not divisible by the stride
    (2, 2, 7, 7, 2, 3, 1, 2, 2, 1, True),             # dilation 2
    (2, 4, 6, 5, 6, (3, 1), (2, 1), (1, 0), (2, 1), 2, True),  # groups 2, mixed per-axis settings
    (2, 3, 6, 6, 6, 3, 2, 1, 1, 3, True),             # depthwise: groups = C_in, two filters each
    (1, 4, 5, 5, 4, 2, 3, 0, 1, 4, False),            # depthwise, stride 3
    (3, 1, 4, 5, 2, 1, 1, 0, 1, 1, True),             # 1x1 kernel
]


def _random_conv_case(seed):
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2]))
    C_in = groups * int(rng.integers(1, 3))
    C_out = groups * int(rng.integers(1, 3))
    kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
    sh, sw = (int(s) for s in rng.integers(1, 4, size=2))
    dh, dw = (int(d) for d in rng.integers(1, 3, size=2))
    ph, pw = (int(p) for p in rng.integers(0, 3, size=2))
    H = int(rng.integers(dh * (kh - 1) + 1, 8))
    W = int(rng.integers(dw * (kw - 1) + 1, 8))
    return (2, C_in, H, W, C_out, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, bool(rng.integers(2)))


@pytest.mark.parametrize("case", CONV_CASES + [_random_conv_case(seed) for seed in range(12)])
def test_conv2d_forward_and_backward_match_torch(case):
    N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups, bias = case
    kh, kw = ref._pair(kernel, "kernel")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C_in, H, W))
    w = rng.standard_normal((C_out, C_in // groups, kh, kw))
    b = rng.standard_normal(C_out) if bias else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    y = ref.conv2d_forward(x, w, b, **args)
    dy = rng.standard_normal(y.shape)
    if bias:
        y_t, (dx_t, dw_t, db_t) = _torch_grads(lambda x, w, b: F.conv2d(x, w, b, **args), dy, x, w, b)
    else:
        y_t, (dx_t, dw_t) = _torch_grads(lambda x, w: F.conv2d(x, w, None, **args), dy, x, w)
    _assert_close(y, y_t)

    dx, dw, db = ref.conv2d_backward(dy, x, w, **args)
    _assert_close(dx, dx_t)
    _assert_close(dw, dw_t)
    if bias:
        _assert_close(db, db_t)


@pytest.mark.parametrize("case", CONV_CASES + [_random_conv_case(seed) for seed in range(12)])
def test_im2col_rung_matches_the_loops_and_the_fast_kernel(case):
    """Rung 2 (im2col + one GEMM) against rung 1 (the loops) and rung 3 (convnp.ops.conv), forward and
    backward, in float64."""
    import convnp
    from convnp import functional as cF

    N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups, bias = case
    kh, kw = ref._pair(kernel, "kernel")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C_in, H, W))
    w = rng.standard_normal((C_out, C_in // groups, kh, kw))
    b = rng.standard_normal(C_out) if bias else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    y = ref.conv2d_forward_im2col(x, w, b, **args)
    _assert_close(y, ref.conv2d_forward(x, w, b, **args))
    dy = rng.standard_normal(y.shape)
    dx, dw, db = ref.conv2d_backward_im2col(dy, x, w, **args)
    for mine, loops in zip((dx, dw, db), ref.conv2d_backward(dy, x, w, **args)):
        _assert_close(mine, loops)

    xt, wt = convnp.tensor(x, requires_grad=True), convnp.tensor(w, requires_grad=True)
    bt = convnp.tensor(b, requires_grad=True) if bias else None
    yt = cF.conv2d(xt, wt, bt, **args)
    (yt * convnp.tensor(dy)).sum().backward()
    _assert_close(y, yt.data)
    _assert_close(dx, xt.grad)
    _assert_close(dw, wt.grad)
    if bias:
        _assert_close(db, bt.grad)


def test_im2col_columns_and_col2im_is_its_adjoint():
    """im2col's columns are the windows, read by hand; col2im is its adjoint: <im2col(x), c> = <x, col2im(c)>."""
    import convnp

    x = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    cols = convnp.im2col(x, 3, stride=1, padding=0)
    assert cols.shape == (9, 2 * 2 * 2)
    np.testing.assert_array_equal(cols[:, 0], x[0, 0, 0:3, 0:3].ravel())  # image 0, output (0, 0)
    np.testing.assert_array_equal(cols[:, 3], x[0, 0, 1:4, 1:4].ravel())  # image 0, output (1, 1)
    np.testing.assert_array_equal(cols[:, 4], x[1, 0, 0:3, 0:3].ravel())  # image 1, output (0, 0)
    rng = np.random.default_rng(0)
    for kernel, stride, padding, dilation in [(3, 1, 0, 1), ((2, 3), (2, 1), (1, 0), (1, 2)), (3, 2, 1, 2)]:
        x = rng.standard_normal((2, 3, 7, 6))
        cols = convnp.im2col(x, kernel, stride, padding, dilation)
        c = rng.standard_normal(cols.shape)
        back = convnp.col2im(c, x.shape, kernel, stride, padding, dilation)
        assert back.shape == x.shape
        np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)
    with pytest.raises(ValueError, match=r"col2im: cols has shape \(3, 3\), expected \(27, 72\)"):
        convnp.col2im(np.zeros((3, 3)), (2, 3, 6, 6), 3, 1, 1)


def test_conv2d_rejects_bad_shapes():
    x = np.zeros((1, 3, 4, 4))
    with pytest.raises(ValueError, match="input channels"):
        ref.conv2d_forward(x, np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="groups"):
        ref.conv2d_forward(x, np.zeros((2, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="output H would be"):
        ref.conv2d_forward(x, np.zeros((2, 3, 5, 3)))


# --- pooling -------------------------------------------------------------------------------------

# (N, C, H, W, kernel, stride, padding)
POOL_CASES = [
    (2, 3, 4, 4, 2, None, 0),          # the classic 2x2 / stride 2
    (2, 2, 7, 6, 3, 2, 1),             # overlapping windows, padding, odd sizes
    (1, 3, 7, 8, (3, 2), (2, 3), (1, 1)),  # non-square everything, sizes not divisible by the stride
    (2, 1, 5, 5, 3, 1, 0),             # stride 1: heavy overlap
    (1, 2, 9, 7, (2, 4), None, (1, 2)),  # stride defaults to the kernel, padding at the limit
    (2, 2, 6, 6, 3, 3, 1),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_matches_torch(case):
    N, C, H, W, kernel, stride, padding = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C, H, W))
    y = ref.max_pool2d_forward(x, kernel, stride, padding)
    dy = rng.standard_normal(y.shape)
    y_t, (dx_t,) = _torch_grads(lambda x: F.max_pool2d(x, kernel, stride, padding), dy, x)
    _assert_close(y, y_t)
    _assert_close(ref.max_pool2d_backward(dy, x, kernel, stride, padding), dx_t)


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_ties_route_to_one_element_like_torch(case):
    """On a constant input (every element ties) each window's gradient goes to ONE element."""
    N, C, H, W, kernel, stride, padding = case
    x = np.full((N, C, H, W), 0.5)
    y = ref.max_pool2d_forward(x, kernel, stride, padding)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    _, (dx_t,) = _torch_grads(lambda x: F.max_pool2d(x, kernel, stride, padding), dy, x)
    dx = ref.max_pool2d_backward(dy, x, kernel, stride, padding)
    _assert_close(dx, dx_t)
    ones = ref.max_pool2d_backward(np.ones_like(y), x, kernel, stride, padding)
    assert ones.sum() == y.size  # one unit of gradient per window, not one per tied element


@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool2d_matches_torch(case):
    N, C, H, W, kernel, stride, padding = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, H, W))
    y = ref.avg_pool2d_forward(x, kernel, stride, padding)
    dy = rng.standard_normal(y.shape)
    y_t, (dx_t,) = _torch_grads(lambda x: F.avg_pool2d(x, kernel, stride, padding), dy, x)
    _assert_close(y, y_t)
    _assert_close(ref.avg_pool2d_backward(dy, x, kernel, stride, padding), dx_t)


def test_pool_rejects_too_much_padding_and_too_small_inputs():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="at most half"):
        ref.max_pool2d_forward(x, 2, padding=2)
    with pytest.raises(ValueError, match="output W would be"):
        ref.avg_pool2d_forward(np.zeros((1, 1, 4, 2)), 3)


# --- relu and linear -----------------------------------------------------------------------------

def test_relu_matches_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 5))
    x[0, 0, 0, :2] = 0.0  # the kink: PyTorch's gradient at exactly 0 is 0
    dy = rng.standard_normal(x.shape)
    y_t, (dx_t,) = _torch_grads(F.relu, dy, x)
    _assert_close(ref.relu_forward(x), y_t)
    _assert_close(ref.relu_backward(dy, x), dx_t)


@pytest.mark.parametrize("x_shape", [(4, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(x_shape, bias):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((3, x_shape[-1]))
    b = rng.standard_normal(3) if bias else None
    y = ref.linear_forward(x, w, b)
    dy = rng.standard_normal(y.shape)
    if bias:
        y_t, (dx_t, dw_t, db_t) = _torch_grads(F.linear, dy, x, w, b)
    else:
        y_t, (dx_t, dw_t) = _torch_grads(lambda x, w: F.linear(x, w), dy, x, w)
    _assert_close(y, y_t)
    dx, dw, db = ref.linear_backward(dy, x, w)
    _assert_close(dx, dx_t)
    _assert_close(dw, dw_t)
    if bias:
        _assert_close(db, db_t)
