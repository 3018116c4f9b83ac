"""Expand a suite into jobs: experiments x methods x grid points x seeds, each with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fairbench import STORE_FORMAT
from fairbench.data.base import sensitive_text
from fairbench.registry import DATASETS, METHODS
from fairbench.suite import Suite


@dataclass
class Job:
    """One training run. `job_id` hashes everything that determines its numbers."""

    suite: str
    experiment: str
    dataset: str
    protocol: str
    target: str
    sensitive: str
    options: dict[str, Any]
    method: str
    label: str
    params: dict[str, Any]
    seed: int
    # Seeds the data (generated data, train/val/test split); `seed` seeds the model.
    split_seed: int
    budget: str
    # The experiment's `bias` attribute, where it names one (else the dataset's bias column).
    bias: str | None = None
    # The arithmetic of training (fairbench.train.PRECISIONS).
    precision: str = "fp32"
    job_id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.job_id:
            self.job_id = job_hash(self.identity())

    def identity(self) -> dict[str, Any]:
        """What the id hashes: not the suite's name nor the label, so identical jobs of two suites
        share an id and relabelling reruns nothing; the method's and the dataset's `version`, so
        a fix that changes numbers reruns their jobs."""
        identity = {
            "format": STORE_FORMAT,
            "dataset": self.dataset,
            "dataset_version": DATASETS.get(self.dataset).version,
            "protocol": self.protocol,
            "target": self.target,
            "sensitive": self.sensitive,
            "options": self.options,
            "method": self.method,
            "method_version": METHODS.get(self.method).version,
            "params": self.params,
            "seed": self.seed,
            "split_seed": self.split_seed,
            "budget": self.budget,
        }
        if self.bias is not None:
            identity["bias"] = self.bias
        if self.precision != "fp32":  # fp32 jobs keep the ids they had before precision was a setting
            identity["precision"] = self.precision
        return identity

    def stack_key(self) -> str:
        """Jobs with equal keys may train together: same everything but the stackable params
        (and the seeds, for a method that stacks seeds)."""
        method = METHODS.get(self.method)
        identity = {**self.identity(), "params": method.stack_signature(self.params)}
        if method.stacks_seeds:
            del identity["seed"], identity["split_seed"]
        return job_hash(identity)


def job_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def expand(suite: Suite) -> list[Job]:
    """All jobs of a suite, in suite order (experiment, method, grid point, seed)."""
    jobs = []
    for experiment in suite.experiments:
        dataset = DATASETS.get(experiment.dataset)
        protocol = dataset.protocols[0] if experiment.protocol is None else experiment.protocol
        options = dataset.explicit_options(experiment.options)
        for spec in suite.methods:
            for params in spec.points(suite.budget):
                for seed in suite.seeds:
                    jobs.append(
                        Job(
                            suite=suite.name,
                            experiment=experiment.id,
                            dataset=experiment.dataset,
                            protocol=protocol,
                            target=experiment.target,
                            sensitive=sensitive_text(experiment.sensitive),
                            options=options,
                            method=spec.method,
                            label=spec.label or spec.method,
                            params=params,
                            seed=seed,
                            split_seed=suite.split_seed_of(seed),
                            budget=suite.budget,
                            bias=experiment.bias,
                            precision=suite.precision,
                        )
                    )
    return jobs


def group_units(jobs: list[Job], stack: bool) -> list[list[Job]]:
    """Work units for the executor: stacked groups (in first-member order) or one job each."""
    if not stack:
        return [[job] for job in jobs]
    units: dict[str, list[Job]] = {}
    for job in jobs:
        key = job.stack_key() if METHODS.get(job.method).stacks(job.params) else job.job_id
        units.setdefault(key, []).append(job)
    return list(units.values())
