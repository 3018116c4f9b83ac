"""One lazy registry for methods, datasets and executors: built-ins by import path, plugins by entry point.

Nothing is imported until a name is asked for, so `fairbench ls` and `validate` stay fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from fairbench.errors import FairbenchError, did_you_mean


class Registry:
    """Maps names to classes, loaded on first use.

    Built-ins are "module:attribute" strings; plugins come from the entry-point group. A plugin
    named like a built-in or like another plugin is an error when the group is scanned (as in
    lm-eval's registry): silently picking one would run code the suite did not ask for.
    """

    def __init__(self, kind: str, group: str, builtins: dict[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._targets: dict[str, str] = dict(builtins)
        self._origin: dict[str, str] = {name: "built-in" for name in builtins}
        self._loaded: dict[str, Any] = {}
        self._scanned = False

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        for ep in entry_points(group=self.group):
            origin = f"plugin ({ep.dist.name if ep.dist else ep.value})"
            if ep.name in self._targets and self._targets[ep.name] != ep.value:
                raise FairbenchError(
                    f"{origin} registers {self.kind} '{ep.name}' (entry point {self.group}: {ep.value}), "
                    f"which is already the {self._origin[ep.name]} {self.kind} '{ep.name}' "
                    f"({self._targets[ep.name]}); rename it in the plugin's entry points or uninstall it"
                )
            self._targets[ep.name] = ep.value
            self._origin[ep.name] = origin
        self._scanned = True

    def register(self, name: str, obj: Any) -> None:
        """Register an already-imported class (for code that defines methods at run time)."""
        self._targets[name] = f"<object {obj!r}>"
        self._origin[name] = "registered"
        self._loaded[name] = obj

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._targets)

    def origin(self, name: str) -> str:
        self._scan_entry_points()
        return self._origin[name]

    def __contains__(self, name: str) -> bool:
        self._scan_entry_points()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Any:
        """Return the class registered as `name`; unknown names get a "did you mean"."""
        if name in self._loaded:
            return self._loaded[name]
        self._scan_entry_points()
        if name not in self._targets:
            raise FairbenchError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._targets)}")
        module_name, _, attribute = self._targets[name].partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise FairbenchError(
                f"{self.kind} '{name}' ({self._origin[name]}) failed to load from '{self._targets[name]}': {error}"
            ) from error
        self._loaded[name] = obj
        return obj


# Adding a built-in is one line here plus its module.
METHODS = Registry(
    "method",
    "fairbench.methods",
    {
        "erm": "fairbench.methods.erm:ERM",
        "adt": "fairbench.methods.adt:ADT",
        "grad_pred": "fairbench.methods.grad_pred:GradPred",
        "grad_auto": "fairbench.methods.grad_auto:GradAuto",
        "nn_auto": "fairbench.methods.nn_auto:NNAuto",
        "dvge": "fairbench.methods.dvge:DVGE",
        "removal": "fairbench.methods.removal:Removal",
        "ffvae": "fairbench.methods.ffvae:FFVAE",
        "fdvae": "fairbench.methods.fdvae:FDVAE",
        "faap": "fairbench.methods.faap:FAAP",
        "gba": "fairbench.methods.gba:GBA",
        "vfae": "fairbench.methods.vfae:VFAE",
        "alfr": "fairbench.methods.alfr:ALFR",
        "lfr": "fairbench.methods.lfr:LFR",
        "repair": "fairbench.methods.repair:Repair",
        "filter_drop": "fairbench.methods.filter_drop:FilterDrop",
        "lff": "fairbench.methods.lff:LfF",
        "group_dro": "fairbench.methods.group_dro:GroupDRO",
        "domain_ind": "fairbench.methods.domain_ind:DomainInd",
        "jtt": "fairbench.methods.jtt:JTT",
        "dfr": "fairbench.methods.dfr:DFR",
        "reductions": "fairbench.methods.reductions:Reductions",
    },
)

DATASETS = Registry(
    "dataset",
    "fairbench.datasets",
    {
        "synthetic": "fairbench.data.synthetic:Synthetic",
        "adult": "fairbench.data.adult:Adult",
        "german": "fairbench.data.german:StatlogGerman",
        "diabetes": "fairbench.data.diabetes:Diabetes",
        "heritage": "fairbench.data.heritage:Heritage",
        "south_german_credit": "fairbench.data.south_german_credit:SouthGermanCredit",
        "compas": "fairbench.data.compas:COMPAS",
        "synthetic_images": "fairbench.data.synthetic_images:SyntheticImages",
        "celeba": "fairbench.data.celeba:CelebA",
        "colored_mnist": "fairbench.data.colored_mnist:ColoredMNIST",
        "cifar10s": "fairbench.data.cifar10s:CIFAR10S",
        "cifar_i": "fairbench.data.cifar_i:CIFARI",
        "lfw": "fairbench.data.lfw:LFW",
    },
)

EXECUTORS = Registry(
    "executor",
    "fairbench.executors",
    {
        "local": "fairbench.execution.local:Local",
        "ray": "fairbench.execution.ray:Ray",
        "slurm": "fairbench.execution.slurm:Slurm",
    },
)
