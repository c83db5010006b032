"""`make bench`: the side-by-side performance harness (see bench/run.py)."""
