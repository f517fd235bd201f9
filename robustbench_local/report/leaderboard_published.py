"""The published side of the leaderboard: RobustBench's CIFAR-10 entries as their
model_info files list them (RobustBench's own numbers, on all 10,000 test images with
AutoAttack, standard version), each cited by paper and RobustBench model name."""

from __future__ import annotations

from dataclasses import dataclass

PUBLISHED_N = 10_000  # RobustBench evaluates every CIFAR-10 entry on the whole test set
MODEL_INFO = "github.com/RobustBench/robustbench, model_info/cifar10/{threat}/{name}.json"


@dataclass(frozen=True)
class Published:
    """One RobustBench entry as its model_info file lists it (accuracies in %)."""

    name: str  # RobustBench's model name
    threat: str  # "Linf" or "L2"
    architecture: str
    method: str
    clean: float
    autoattack: float
    cost: str  # training cost as the paper states it, or why it is not given here
    paper: str  # authors, title, venue
    link: str
    extra_data: str | None = None


# Figures from RobustBench's model_info files (MODEL_INFO). Architectures are the zoo's
# networks: RobustBench writes "ResNet-18" for Wong2020Fast and Rice2020Overfitting (L2),
# whose zoo models are PreAct-ResNet-18s; its L-inf Rice2020Overfitting is a WideResNet-34-20.
WONG = "E. Wong, L. Rice, J. Z. Kolter, \"Fast is better than free: Revisiting adversarial training\", ICLR 2020"
RICE = "L. Rice, E. Wong, J. Z. Kolter, \"Overfitting in adversarially robust deep learning\", ICML 2020"
CARMON = (
    "Y. Carmon, A. Raghunathan, L. Schmidt, P. Liang, J. C. Duchi, \"Unlabeled Data Improves Adversarial "
    "Robustness\", NeurIPS 2019"
)
ENGSTROM = "L. Engstrom, A. Ilyas, S. Santurkar, D. Tsipras, \"Robustness (Python library)\", GitHub, Sep 2019"
STANDARD = (
    "RobustBench's standardly trained model (F. Croce et al., \"RobustBench\", NeurIPS 2021 Datasets and Benchmarks)"
)
NOT_STATED = "not stated in the entry"
PUBLISHED: tuple[Published, ...] = (
    Published(
        "Carmon2019Unlabeled",
        "Linf",
        "WideResNet-28-10",
        "robust self-training (TRADES loss)",
        89.69,
        59.53,
        NOT_STATED,
        CARMON,
        "https://arxiv.org/abs/1905.13736",
        extra_data="500k unlabeled extra images (80M Tiny Images), pseudo-labelled",
    ),
    Published(
        "Rice2020Overfitting",
        "Linf",
        "WideResNet-34-20",
        "PGD-AT, early stopping",
        85.34,
        53.42,
        NOT_STATED,
        RICE,
        "https://arxiv.org/abs/2002.11569",
    ),
    Published(
        "Wong2020Fast",
        "Linf",
        "PreAct-ResNet-18",
        "FGSM-RS",
        83.34,
        43.21,
        "12 GPU-min, 15 epochs (paper)",
        WONG,
        "https://arxiv.org/abs/2001.03994",
    ),
    Published(
        "Standard",
        "Linf",
        "WideResNet-28-10",
        "standard",
        94.78,
        0.00,
        NOT_STATED,
        STANDARD,
        "https://github.com/RobustBench/robustbench",
    ),
    Published(
        "Engstrom2019Robustness",
        "L2",
        "ResNet-50",
        "PGD-AT",
        90.83,
        69.24,
        NOT_STATED,
        ENGSTROM,
        "https://github.com/MadryLab/robustness",
    ),
    Published(
        "Rice2020Overfitting",
        "L2",
        "PreAct-ResNet-18",
        "PGD-AT, early stopping",
        88.67,
        67.68,
        NOT_STATED,
        RICE,
        "https://arxiv.org/abs/2002.11569",
    ),
    Published(
        "Standard",
        "L2",
        "WideResNet-28-10",
        "standard",
        94.78,
        0.00,
        NOT_STATED,
        STANDARD,
        "https://github.com/RobustBench/robustbench",
    ),
)
