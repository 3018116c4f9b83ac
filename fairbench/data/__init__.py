"""Datasets: one module per dataset family, all behind `fairbench.registry.DATASETS`."""

from fairbench.data.base import Dataset, TaskData, build_task, data_dir_from_env, open_dataset

__all__ = ["Dataset", "TaskData", "build_task", "data_dir_from_env", "open_dataset"]
