"""dtype names as PyTorch spells them (``convnp.float32``, ``convnp.long``, ...).  They are NumPy's
dtypes, so ``x.dtype == convnp.float32`` and ``np.float32`` mean the same."""
import numpy as np

float16 = half = np.float16
float32 = np.float32
float64 = double = np.float64
int8 = np.int8
int16 = short = np.int16
int32 = np.int32
int64 = long = np.int64
uint8 = np.uint8
bool_ = np.bool_
