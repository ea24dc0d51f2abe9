"""``python -m convnp``: the convnp command line (see convnp.cli)."""
import sys

from .cli import main

sys.exit(main())
