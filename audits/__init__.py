"""audits: statistics a reviewer can trust about a representation and the stream that trained it.

Arrays in, results out (``plumbing`` underneath, nothing of ``fairgen`` or ``steering``).
"""

from plumbing.tables import cramers_v, cramers_v_corrected

from .estimated import EstimatedFairness, EstimatedLeakage, estimated_fairness, estimated_leakage
from .fairness import FairnessResult, group_fairness
from .leakage import LeakageResult, leakage
from .memorisation import MemorisationResult, memorisation
from .report import AuditReport
from .representation import audit_representation
from .results import AuditResult, ByAttribute, audit
from .stream import StreamBalance, compare_streams, stream_balance, stream_balance_joint

__all__ = [
    # one call for a representation, and the report it fills (report.json, report.md, plots)
    "audit_representation",
    "AuditReport",
    # how well a probe recovers a protected attribute (CV, bootstrap CI, permutation p)
    # the same as objects keyed by attribute name, nothing written
    "audit",
    "AuditResult",
    "ByAttribute",
    "leakage",
    "LeakageResult",
    # a target probe's rates by protected group (fairlearn MetricFrame) and its gaps
    "group_fairness",
    "FairnessResult",
    # per-class attribute histograms of a stream, Cramér's V with a CI, several attributes jointly
    "stream_balance",
    "stream_balance_joint",
    "compare_streams",
    "StreamBalance",
    # whether generated samples sit closer to training data than held-out real ones
    "memorisation",
    "MemorisationResult",
    # fairness and leakage when a labeler gave the protected column, corrected with a verified set
    "estimated_fairness",
    "estimated_leakage",
    "EstimatedFairness",
    "EstimatedLeakage",
    # association of two categorical labelings (plumbing.tables; steering uses it too)
    "cramers_v",
    "cramers_v_corrected",
]
