"""The body of ``convnp datasets`` (its flags are in ``convnp.cli.build_parser``): which datasets are here,
where, and how to get the others; and the message of a missing dataset that train and evaluate give.

    datasets_command(args)     # -> exit status 0
"""
import os

from .datasets import available_datasets
from .download import data_dir


def datasets_command(args):
    statuses = available_datasets()
    chosen_by = "CONVNP_DATA" if os.environ.get("CONVNP_DATA") else "default; set CONVNP_DATA to change it"
    print(f"data folder: {data_dir()} ({chosen_by})")
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "yes" if s.available else "no "
        print(f"  {s.name:<{width}}  {mark}  {s.location}")
        if not s.available and s.how_to_get:
            print(f"  {'':<{width}}       to get it: {s.how_to_get}")
    return 0


def dataset_problem(name, error):
    """The missing-data message, every line of it (which files, where, how to get them)."""
    detail = str(error).strip() or type(error).__name__
    return f"dataset {name} is not available: {detail}\nrun 'convnp datasets' to see where to put it"
