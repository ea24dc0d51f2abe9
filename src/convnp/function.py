"""Function: the base class of every op.

An op is one class with ``forward(self, *arrays, **attrs) -> array`` and
``backward(self, dy) -> one gradient (or None) per input`` on the same screen.  Ops see plain arrays,
never Tensors.  ``apply`` is the bridge: it unwraps Tensors, runs ``forward``, and, when gradients are
wanted, wraps the result in a Tensor that remembers the op so ``Tensor.backward`` can call it.

``self.needs_input_grad[i]`` tells ``forward`` and ``backward`` whether input ``i`` needs a gradient at
all (all False under ``no_grad()``), so an op skips work nobody will use: the first conv layer never
computes the gradient of the image, and evaluation saves nothing for a backward pass.
"""
from .backend import check_same_device
from .tensor import Tensor, is_grad_enabled

# Tracing (convnp.interop.trace): while set, ``trace_hook(cls, inputs, attrs, output)`` is called after
# every op with the op's class, its input Tensors (or None), its keyword attributes and its output.
# None otherwise, so an ordinary forward pays one comparison per op.
trace_hook = None


class Function:
    # Defaults for every op instance (class attributes, so creating an op runs no __init__: one op is
    # created per call, thousands per step); an instance sets its own as it runs.
    inputs = None
    needs_input_grad = ()
    saved = ()
    inference_only = False  # True: forward only, refusing inputs that need a gradient (Conv2dReLUMaxPool)

    def save_for_backward(self, *arrays):
        """Keep what backward needs (and say so explicitly: this is the op's memory cost)."""
        self.saved = arrays

    def release(self):
        """Drop the graph edges and saved arrays once backward has run (frees memory early)."""
        self.inputs = None
        self.saved = ()

    def forward(self, *arrays, **attrs):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **attrs):
        """Run the op on Tensors (or arrays/None) and record it on the tape if gradients are needed."""
        fn = cls()
        tensors = [x if (x is None or isinstance(x, Tensor)) else Tensor(x) for x in inputs]
        if is_grad_enabled():
            fn.needs_input_grad = tuple(t is not None and t.requires_grad for t in tensors)
        else:  # under no_grad nothing needs a gradient (apply runs for every op of every forward: keep it cheap)
            fn.needs_input_grad = (False,) * len(tensors)
        try:
            y = fn.forward(*[None if t is None else t.data for t in tensors], **attrs)
        except TypeError:  # CuPy refuses host arrays: say which devices were mixed (free unless it fails)
            check_same_device(cls.__name__, *[None if t is None else t.data for t in tensors])
            raise
        out = Tensor(y)
        if any(fn.needs_input_grad):
            out.requires_grad = True
            out._ctx = fn
            fn.inputs = tuple(tensors)
        else:
            fn.saved = ()
        if trace_hook is not None:
            trace_hook(cls, tensors, attrs, out)
        return out
