"""Latent steering: label samples, learn where protected values live, and balance, flip (or erase) them."""

from .base import Steered, Steerer
from .card import load_card, read_card, save_card
from .classifier import LatentClassifier
from .conditional import ConditionalEraser
from .confirmed import ConfirmedSteerer, Draw
from .fit import (
    checked_flips,
    confirmed_report,
    fit_steerer,
    latent_probe_accuracy,
    measure_stream,
    steering_report,
)
from .inlp import INLPEraser
from .labelling import LabelledLatents, label_latents, sample_and_label
from .leace import LeaceEraser, LeaceFitter
from .modes import LatentSteerer
from .nonlinear import ClassifierSteerer
from .ot import GaussianFit, GaussianOTMap, gaussian_ot_map
from .prior import LatentPrior, in_prior_support, prior_support
from .probes import LinearProbe, MLPProbe, probe_report
from .projection import ProjectionEraser
from .registry import register_steerer, steerer_class, steering_methods, steering_modes
from .twins import ConfirmedFlipper, FlipResult, confirmed_flips

__all__ = [
    "Steered",
    "Steerer",
    "register_steerer",
    "steerer_class",
    "steering_methods",
    "steering_modes",
    "ClassifierSteerer",
    "ConfirmedSteerer",
    "Draw",
    "LatentClassifier",
    "checked_flips",
    "confirmed_report",
    "ConditionalEraser",
    "GaussianFit",
    "GaussianOTMap",
    "INLPEraser",
    "LabelledLatents",
    "LatentSteerer",
    "LeaceEraser",
    "LeaceFitter",
    "LinearProbe",
    "MLPProbe",
    "ProjectionEraser",
    "fit_steerer",
    "gaussian_ot_map",
    "label_latents",
    "latent_probe_accuracy",
    "load_card",
    "measure_stream",
    "probe_report",
    "read_card",
    "sample_and_label",
    "save_card",
    "steering_report",
    "LatentPrior",
    "in_prior_support",
    "prior_support",
    "ConfirmedFlipper",
    "FlipResult",
    "confirmed_flips",
]
