"""Baselines: estimators fairgen's steering is measured against, not what it runs.

ProjectionEraser  collapse a probe's directions (InterFaceGAN style) or the class-mean differences
LinearProbe       a linear classifier on latents whose normals are the attribute's directions
probe_report      fit a probe (linear or MLP) on one split, score it on both

The tests show LEACE (``steering.LeaceEraser``) erasing what these leave behind, with a smaller
edit.
"""

from .probes import LinearProbe, probe_report
from .projection import ProjectionEraser, mean_difference_subspace

__all__ = ["LinearProbe", "ProjectionEraser", "mean_difference_subspace", "probe_report"]
