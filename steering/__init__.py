"""Latent steering: label samples, learn where protected values live, and balance, flip (or
erase) them.

Modules not re-exported here are internals, and ``steering.baselines`` holds the estimators the
tests measure steering against (projection eraser, linear probe).
"""

from .card import load_card, save_card
from .classifier import LatentClassifier
from .confirmed import ConfirmedSteerer
from .fit import (
    STEERING_METHODS,
    checked_flips,
    confirmed_report,
    fit_steerer,
    latent_probe_accuracy,
    steering_report,
)
from .labelling import label_latents, sample_and_label
from .leace import LeaceEraser, LeaceFitter
from .modes import LatentSteerer
from .nonlinear import ClassifierSteerer
from .prior import LatentPrior, in_prior_support, prior_support
from .twins import ConfirmedFlipper, confirmed_flips

__all__ = [
    # fit a steerer, measure it, save it as a card (what `fairgen steer` runs)
    "fit_steerer",
    "STEERING_METHODS",
    "steering_report",
    "confirmed_report",
    "save_card",
    "load_card",
    # the steerers a card holds
    "LatentSteerer",
    "ClassifierSteerer",
    "ConfirmedSteerer",
    # counterfactual flips that stay inside the generator's prior
    "confirmed_flips",
    "checked_flips",
    "ConfirmedFlipper",
    "LatentPrior",
    "prior_support",
    "in_prior_support",
    # labelled samples, and what reads an attribute from latents
    "sample_and_label",
    "label_latents",
    "latent_probe_accuracy",
    "LatentClassifier",
    # erasing an attribute from latents (LEACE)
    "LeaceEraser",
    "LeaceFitter",
]
