"""Model zoo. Every model is a raw network behind a Normalize layer, so it takes [0,1]
pixels; ``build_model`` rebuilds any of them from (arch, options) alone.

    from robustbench_local.models import build_model, resolve_normalization
    mean, std = resolve_normalization("seed", info)
    model = build_model("resnet18", num_classes=10, input_shape=(3, 32, 32), mean=mean, std=std, blocks="5,5,5,5")
"""

from .normalize import NORMALIZATIONS, Normalize, NormalizedModel, resolve_normalization
from .zoo import INIT_ONLY_OPTIONS, MODELS, build_model, model_kwargs_help, option_defaults

# Importing the families registers their constructors.
from . import cnn, fast, resnet, timm_models, tv, wrn  # noqa: E402,F401  isort: skip

__all__ = [
    "MODELS",
    "Normalize",
    "NormalizedModel",
    "build_model",
    "resolve_normalization",
    "NORMALIZATIONS",
    "model_kwargs_help",
    "option_defaults",
    "INIT_ONLY_OPTIONS",
]
