"""Ops: one class per op, ``forward`` and ``backward`` side by side, arrays in, arrays out."""
