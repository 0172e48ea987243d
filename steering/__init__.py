"""Latent steering: label samples, learn where protected values live, and balance, flip (or
erase) them.

Modules not re-exported here are internals, and ``steering.baselines`` holds the estimators the
tests measure steering against (projection eraser, linear probe).
"""

from .base import Steered, Steerer
from .card import load_card, save_card
from .classifier import LatentClassifier
from .confirmed import ConfirmedSteerer
from .fit import (
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
from .registry import register_steerer, steerer_class, steering_methods, steering_modes
from .twins import ConfirmedFlipper, confirmed_flips

__all__ = [
    # fit a steerer, measure it, save it as a card (what `fairgen steer` runs)
    "fit_steerer",
    "steering_methods",
    "steering_modes",
    "steering_report",
    "confirmed_report",
    "save_card",
    "load_card",
    # the steerer contract, its registry of methods, and the steerers a card holds
    "Steerer",
    "Steered",
    "register_steerer",
    "steerer_class",
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
