"""The image data sets experiments train on: their prepared file, channels and FID features.

Imported by the Snakefile at parse time (through diffrepro.plan), so it must stay cheap: no
torch, no numpy. An experiment names its data set in its replication file (`dataset:`); a
training spec carries the name only when it is not DEFAULT, so the specs (and hashes) of every
Fashion-MNIST experiment are what they were before CIFAR-10 existed.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    name: str
    channels: int
    extractor: str  # the FID features that mean something on it (diffrepro.features names)
    description: str


DATASETS = {
    "fashion_mnist": Dataset("fashion_mnist", 1, "fmnist-classifier", "Fashion-MNIST, 28x28 grey zero-padded to 32x32"),
    # Inception-v3 features, as every CIFAR-10 FID the papers report (docs/papers.md §7)
    "cifar10": Dataset("cifar10", 3, "inception", "CIFAR-10, 32x32 RGB"),
}
DEFAULT = "fashion_mnist"


def data_file(data_dir: str, name: str) -> str:
    """The prepared npz of a data set (written by the rule of the same name, workflow/rules/data.smk)."""
    return f"{data_dir}/{name}.npz"


def dataset_of(training_spec: dict) -> Dataset:
    """The data set a training spec's network learns (specs without `dataset` are Fashion-MNIST)."""
    return DATASETS[training_spec.get("dataset", DEFAULT)]
