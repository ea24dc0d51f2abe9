"""Mistakes are reported in words: each error names the layer or op and says what it expected."""
import numpy as np
import pytest

from convnp import Tensor, functional as F, models, nn


def zeros(*shape):
    return np.zeros(shape, dtype=np.float32)


# --- convolution ------------------------------------------------------------------------------------

def test_conv_wrong_ndim_suggests_adding_the_batch_axis():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*expected a 4-D input \(N, C, H, W\), got shape "
                                         r"\(3, 28, 28\) \(for one image use x\[None\]\)"):
        nn.Conv2d(3, 8, 3)(zeros(3, 28, 28))
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D input"):
        F.conv2d(zeros(5, 5), zeros(1, 1, 3, 3))


def test_conv_channel_mismatch():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*expected 3 input channels \(N, 3, H, W\), "
                                         r"got shape \(2, 1, 28, 28\)"):
        nn.Conv2d(3, 8, 3)(zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"conv2d: expected 3 input channels"):
        F.conv2d(zeros(1, 4, 5, 5), zeros(2, 3, 3, 3))


def test_conv_channels_last_input_is_recognised():
    with pytest.raises(ValueError, match=r"channels-last \(N, H, W, C\); convnp is NCHW.*transpose\(0, 3, 1, 2\)"):
        nn.Conv2d(3, 8, 3)(zeros(2, 28, 28, 3))


@pytest.mark.parametrize("shape, padding, fragment", [
    ((2, 3, 3, 3), 0, r"input 3x3 padded to 3x3 is smaller than the \(dilated\) kernel 5x5"),
    ((2, 3, 2, 9), 1, r"input 2x9 padded to 4x11 is smaller than the \(dilated\) kernel 5x5"),
])
def test_kernel_larger_than_padded_input(shape, padding, fragment):
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(5, 5\).*" + fragment):
        nn.Conv2d(3, 8, 5, padding=padding)(zeros(*shape))
    with pytest.raises(ValueError, match=r"conv2d: .*dilated\) kernel 5x9"):
        F.conv2d(zeros(1, 1, 6, 6), zeros(1, 1, 3, 3), dilation=(2, 4))


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"Conv2d: groups=2 must divide in_channels=3 and out_channels=8"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match=r"groups=4 must divide in_channels=4 and out_channels=6"):
        nn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match=r"conv2d: groups=4 must be >= 1 and divide the 6 output channels"):
        F.conv2d(zeros(1, 4, 5, 5), zeros(6, 1, 3, 3), groups=4)
    with pytest.raises(ValueError, match=r"conv2d: expected 2 input channels"):  # 3 channels cannot split in 2
        F.conv2d(zeros(1, 3, 5, 5), zeros(6, 1, 3, 3), groups=2)


def test_conv_argument_errors():
    with pytest.raises(ValueError, match=r"conv2d: weight must be \(F, C/groups, kh, kw\), got shape \(3, 3, 3\)"):
        F.conv2d(zeros(1, 3, 5, 5), zeros(3, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\), got \(3,\)"):
        F.conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 3, 3), zeros(3))
    with pytest.raises(ValueError, match=r"stride and dilation must be >= 1.*stride \(0, 0\)"):
        nn.Conv2d(3, 8, 3, stride=0)(zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"padding='same' with an even .*kernel \(2, 2\)"):
        F.conv2d(zeros(1, 3, 5, 5), zeros(4, 3, 2, 2), padding="same")
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got 'big'"):
        nn.Conv2d(3, 8, "big")


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Conv2d(3, 8, 0), r"Conv2d: kernel, stride and dilation must be >= 1 .*kernel \(0, 0\)"),
    (lambda: nn.Conv2d(3, 8, (3, 0)), r"Conv2d: kernel, stride .*kernel \(3, 0\)"),
    (lambda: nn.Conv2d(3, 8, 3, stride=0), r"Conv2d: kernel, stride .*stride \(0, 0\)"),
    (lambda: nn.Conv2d(3, 8, 3, dilation=(1, 0)), r"Conv2d: kernel, stride .*dilation \(1, 0\)"),
    (lambda: nn.Conv2d(3, 8, 3, padding=-1), r"Conv2d: .*padding >= 0.*padding \(-1, -1\)"),
    (lambda: nn.Conv2d(3, 8, 3, groups=0), r"Conv2d: groups must be an int >= 1, got 0"),
    (lambda: nn.Conv2d(0, 8, 3), r"Conv2d: in_channels must be an int >= 1, got 0"),
    (lambda: nn.Conv2d(3, 0, 3), r"Conv2d: out_channels must be an int >= 1, got 0"),
    (lambda: nn.Conv2d(3.0, 8, 3), r"Conv2d: in_channels must be an int >= 1, got 3.0"),
    (lambda: nn.Linear(0, 3), r"Linear: in_features must be an int >= 1, got 0"),
    (lambda: nn.Linear(4, -2), r"Linear: out_features must be an int >= 1, got -2"),
    (lambda: nn.MaxPool2d(0), r"MaxPool2d: kernel, stride and dilation must be >= 1 .*kernel \(0, 0\)"),
    (lambda: nn.MaxPool2d(2, stride=0), r"MaxPool2d: .*stride \(0, 0\)"),
    (lambda: nn.AvgPool2d(3, padding=-1), r"AvgPool2d: .*padding \(-1, -1\)"),
    (lambda: nn.AdaptiveAvgPool2d(0), r"AdaptiveAvgPool2d: output_size must be >= 1, got 0"),
    (lambda: nn.AdaptiveAvgPool2d((None, -1)), r"AdaptiveAvgPool2d: output_size must be >= 1"),
    (lambda: nn.BatchNorm2d(0), r"BatchNorm2d: num_features must be an int >= 1, got 0"),
    (lambda: nn.BatchNorm1d(4, eps=0), r"BatchNorm1d: eps must be > 0, got 0"),
    (lambda: nn.BatchNorm2d(4, momentum=1.5), r"BatchNorm2d: momentum must be in \[0, 1\] or None"),
])
def test_layer_arguments_are_checked_at_construction(make, message):
    """A bad argument fails when the layer is built, naming the layer and the argument: never a
    ZeroDivisionError, and never only at the first forward."""
    with pytest.raises(ValueError, match=message):
        make()


def test_functional_checks_arguments_before_dividing_by_them():
    with pytest.raises(ValueError, match=r"conv2d: kernel, stride .*stride \(0, 1\)"):
        F.conv2d(zeros(1, 1, 5, 5), zeros(1, 1, 3, 3), stride=(0, 1))
    with pytest.raises(ValueError, match=r"max_pool2d: kernel, stride .*stride \(0, 0\)"):
        F.max_pool2d(zeros(1, 1, 5, 5), 2, stride=0)
    with pytest.raises(ValueError, match=r"conv2d: groups=0 must be >= 1"):
        F.conv2d(zeros(1, 1, 5, 5), zeros(1, 1, 3, 3), groups=0)


# --- pooling ------------------------------------------------------------------------------------------------

def test_max_pool2d_checks_every_new_call_after_caching_good_ones():
    """max_pool2d remembers the calls it has checked (batch-1 latency); a call that differs in the
    shape, an argument or an argument's type (2.0 == 2) is checked again and refused."""
    x = zeros(1, 1, 5, 5)
    assert F.max_pool2d(x, 2).shape == (1, 1, 2, 2)
    assert F.max_pool2d(x, 2).shape == (1, 1, 2, 2)  # from the cache
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got 2\.0"):
        F.max_pool2d(x, 2.0)
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"max_pool2d: .*smaller than"):
        F.max_pool2d(zeros(1, 1, 1, 1), 2)
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got \[2, 'a'\]"):
        F.max_pool2d(x, [2, "a"])  # unhashable: checked without the cache
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got \(2\.5, 2\)"):
        F.max_pool2d(x, (2.5, 2))  # never truncated to 2
    assert F.max_pool2d(x, (np.int64(2), 2)).shape == (1, 1, 2, 2)  # NumPy integers are integers


@pytest.mark.parametrize("layer, fn", [(nn.MaxPool2d, F.max_pool2d), (nn.AvgPool2d, F.avg_pool2d)])
def test_pooling_padding_at_most_half_the_kernel(layer, fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{layer.__name__}: padding \(2, 2\) must be at most half the kernel "
                                         rf"size \(3, 3\)"):
        layer(3, padding=2)  # at construction, not at the first forward
    with pytest.raises(ValueError, match=rf"{name}: padding \(0, 2\) must be at most half the kernel size \(2, 3\)"):
        fn(zeros(1, 1, 8, 8), (2, 3), padding=(0, 2))


def test_pooling_window_and_ndim():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(3, 3\).*input 2x2 .* kernel 3x3"):
        nn.MaxPool2d(3)(zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"avg_pool2d: expected a 4-D input .*x\[None\]"):
        F.avg_pool2d(zeros(1, 4, 4), 2)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d\(output_size=2\): expected a 4-D input"):
        nn.AdaptiveAvgPool2d(2)(zeros(3, 5, 5))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected a 4-D input"):
        F.adaptive_avg_pool2d(zeros(3, 5, 5), 2)
    with pytest.raises(ValueError, match=r"output_size must be >= 1"):
        F.adaptive_avg_pool2d(zeros(1, 1, 4, 4), 0)


# --- models --------------------------------------------------------------------------------------------

def test_lenet5_given_32x32_images():
    with pytest.raises(ValueError, match=r"LeNet5 expects 28x28 images, got 32x32.*400 features.*fc1.*takes 256"
                                         r".*use LeNet5Classic"):
        models.LeNet5()(zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"LeNet5Classic expects 32x32 images, got 28x28.*256 features.*takes 400"
                                         r".*use LeNet5 for"):
        models.LeNet5Classic()(zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"LeNet5 expects 28x28 images, got 30x28"):
        models.LeNet5()(zeros(2, 1, 30, 28))
    with pytest.raises(ValueError, match=r"x\[None\]"):  # a single image without its batch axis
        models.LeNet5()(zeros(1, 28, 28))


def test_linear_wrong_in_features():
    with pytest.raises(ValueError, match=r"Linear\(in_features=10, out_features=3, bias=True\): expected input "
                                         r"with 10 features in its last axis, got 12 \(input shape \(4, 12\)\)"):
        nn.Linear(10, 3)(zeros(4, 12))
    with pytest.raises(ValueError, match=r"linear: expected input with 4 features in its last axis, got 3 .*"
                                         r"weight of shape \(2, 4\)"):
        F.linear(zeros(4, 3), zeros(2, 4))
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(2,\), got \(3,\)"):
        F.linear(zeros(4, 4), zeros(2, 4), zeros(3))
    with pytest.raises(ValueError, match=r"Linear\(in_features=256.*got 400"):  # flattened 32x32 features
        nn.Sequential(nn.Flatten(), nn.Linear(256, 10))(zeros(2, 16, 5, 5))


# --- batch norm ---------------------------------------------------------------------------------------------

def test_batchnorm_channel_and_ndim_mismatch():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4.*expected input \(N, C, H, W\) with C = 4, got shape "
                                         r"\(2, 3, 5, 5\)"):
        nn.BatchNorm2d(4)(zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4.*got shape \(2, 4\)"):
        nn.BatchNorm2d(4)(zeros(2, 4))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*expected input \(N, C\) with C = 4, got shape \(2, 3\)"):
        nn.BatchNorm1d(4)(zeros(2, 3))
    with pytest.raises(ValueError, match=r"more than one value per channel"):
        nn.BatchNorm2d(3)(zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"evaluation mode needs running_mean and running_var"):
        F.batch_norm(zeros(4, 3), None, None, training=False)


# --- losses -------------------------------------------------------------------------------------------

def test_float_targets_are_a_type_error():
    with pytest.raises(TypeError, match=r"cross_entropy: targets must be integer class indices.*got dtype float64"
                                        r".*astype\(int\)"):
        F.cross_entropy(zeros(4, 10), np.array([1.0, 2, 3, 4]))
    with pytest.raises(TypeError, match=r"integer class indices.*float32"):
        nn.CrossEntropyLoss()(Tensor(zeros(4, 10)), Tensor(np.array([1, 2, 3, 4], dtype=np.float32)))


@pytest.mark.parametrize("target, bad", [([1, 2, 3, 10], 10), ([1, -1, 0, 0], -1)])
def test_targets_out_of_range(target, bad):
    with pytest.raises(ValueError,
                       match=rf"cross_entropy: target {bad} is out of range for 10 classes \(valid: 0..9\)"):
        F.cross_entropy(zeros(4, 10), np.array(target))


def test_wrong_target_length_and_logit_shape():
    with pytest.raises(ValueError, match=r"expected 4 targets, shape \(4,\), for logits of shape \(4, 10\), "
                                         r"got shape \(3,\)"):
        F.cross_entropy(zeros(4, 10), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"got shape \(4, 1\)"):
        F.cross_entropy(zeros(4, 10), np.array([[1], [2], [3], [4]]))
    # (N, K, d) logits are PyTorch's spatial case: they need (N, d) targets
    with pytest.raises(ValueError, match=r"expected targets of shape \(4, 2\) for scores of shape \(4, 10, 2\)"):
        F.cross_entropy(zeros(4, 10, 2), np.array([1, 2, 3, 3]))
    with pytest.raises(ValueError, match=r"expected \(N, C\) or \(N, C, d1, ...\) logits, got shape \(10,\)"):
        F.cross_entropy(zeros(10), np.array([1]))
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(zeros(4, 10), np.array([0, 1, 2, 3]), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        F.cross_entropy(zeros(4, 10), np.array([0, 1, 2, 3]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3, 2\) and target shape \(2, 3\) differ"):
        F.mse_loss(zeros(3, 2), zeros(2, 3))


# --- state dicts and other arguments -------------------------------------------------------------------------

def test_state_dict_mismatches_name_the_key():
    model = models.TinyCNN()
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"TinyCNN failed: 4\.weight: checkpoint has shape \(3, 28\), "
                                         r"this model has \(3, 27\)"):
        model.load_state_dict({**state, "4.weight": np.zeros((3, 28))})
    with pytest.raises(ValueError, match=r"missing keys: 0\.bias"):
        model.load_state_dict({k: v for k, v in state.items() if k != "0.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys: fc\.weight"):
        model.load_state_dict({**state, "fc.weight": np.zeros(1)})
    with pytest.raises(ValueError,
                       match=r"fc1\.weight: checkpoint has shape \(120, 400\), this model has \(120, 256\)"):
        models.LeNet5().load_state_dict(models.LeNet5Classic().state_dict())


def test_other_argument_errors():
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]"):
        F.dropout(zeros(2), -0.1)
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients"):
        Tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar.*pass gradient="):
        (Tensor(zeros(2), requires_grad=True) * 2).backward()
