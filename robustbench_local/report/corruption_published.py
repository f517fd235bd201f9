"""Published CIFAR-10-C accuracies that the report reads our corruption numbers against.

Per-corruption figures are the means over the 5 severities of RobustBench's per-severity
results (RobustBench/robustbench, model_info/cifar10/corruptions/unaggregated_results.csv);
clean and mean corruption accuracy as RobustBench lists them. Both models were evaluated on
the real CIFAR-10-C files, all 10,000 test images per corruption and severity."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "RobustBench, model_info/cifar10/corruptions (per-severity results, averaged over severities here)"


@dataclass(frozen=True)
class Published:
    name: str  # RobustBench's model name
    paper: str
    architecture: str
    training: str
    clean: float  # %
    mean: float  # % over the 15 corruptions x 5 severities
    by_corruption: dict[str, float]  # % mean over severities 1-5
    by_severity: dict[int, float]  # % mean over the 15 corruptions

    @property
    def relative_drop(self) -> float:
        return (self.clean - self.mean) / self.clean

    def worst(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.by_corruption.items(), key=lambda kv: kv[1])[:k]


PUBLISHED = (
    Published(
        "Standard",
        "RobustBench's standard-training baseline (Croce et al. 2021)",
        "WideResNet-28-10",
        "standard",
        94.78,
        73.46,
        {
            "gaussian_noise": 47.03,
            "shot_noise": 58.78,
            "impulse_noise": 55.30,
            "defocus_blur": 81.49,
            "glass_blur": 51.00,
            "motion_blur": 77.72,
            "zoom_blur": 75.60,
            "snow": 81.89,
            "frost": 75.04,
            "fog": 88.79,
            "brightness": 93.28,
            "contrast": 82.61,
            "elastic_transform": 83.78,
            "pixelate": 71.98,
            "jpeg_compression": 77.56,
        },
        {1: 86.90, 2: 81.34, 3: 74.92, 4: 67.64, 5: 56.49},
    ),
    Published(
        "Gowal2020Uncovering_70_16 (L-inf)",
        "Gowal et al. 2020, Uncovering the Limits of Adversarial Training",
        "WideResNet-70-16",
        "adversarial, L-inf 8/255",
        85.29,
        76.37,
        {
            "gaussian_noise": 81.13,
            "shot_noise": 81.99,
            "impulse_noise": 75.05,
            "defocus_blur": 80.85,
            "glass_blur": 78.52,
            "motion_blur": 77.44,
            "zoom_blur": 79.74,
            "snow": 79.21,
            "frost": 74.87,
            "fog": 62.87,
            "brightness": 81.95,
            "contrast": 46.48,
            "elastic_transform": 79.44,
            "pixelate": 83.09,
            "jpeg_compression": 82.98,
        },
        {1: 83.14, 2: 80.23, 3: 76.75, 4: 73.06, 5: 68.69},
    ),
)
