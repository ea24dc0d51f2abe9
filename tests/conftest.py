"""The test processes run convnp the way its command does (``convnp.cli.main``): convnp's own threads
switched on, one per CPU, with BLAS on one thread meanwhile.  Tests that need other counts use
``convnp.num_threads``, which restores these afterwards."""
from convnp import parallel

parallel.set_num_threads(parallel.available_threads())
