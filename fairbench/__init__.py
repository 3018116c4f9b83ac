"""fairbench: a command-line benchmarking suite for debiasing (fairness) methods."""

__version__ = "0.1.0"
# Bumped when the results store's layout changes; a store of another format is refused.
STORE_FORMAT = 3  # 2: job ids without label, with versions and split_seed; last_error. 3: jobs.bias
