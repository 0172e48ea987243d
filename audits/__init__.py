"""audits: statistics a reviewer can trust about a representation and the stream that trained it.

leakage          how well a probe recovers a protected attribute (CV, bootstrap CI, permutation p)
group_fairness   a target probe's rates by protected group (fairlearn MetricFrame) and its gaps
estimated_fairness / estimated_leakage  the same when a labeler gave the protected column,
                 corrected for its error with a verified set (audits.estimated)
stream_balance   per-class attribute histograms of a stream and Cramér's V with a CI
stream_balance_joint  the same for several attributes and their joint value
memorisation     whether generated samples sit closer to training data than held-out real ones
cramers_v        association of two categorical labelings (also used by steering)
audit            leakage + fairness per attribute, as objects keyed by name (nothing written)
AuditReport      named results -> report.json, report.md and PNG plots
"""

from .estimated import EstimatedFairness, EstimatedLeakage, estimated_fairness, estimated_leakage
from .fairness import FairnessResult, group_fairness
from .leakage import LeakageResult, leakage
from .memorisation import MemorisationResult, memorisation, nearest_distances
from .report import AuditReport
from .representation import audit_representation
from .results import AuditResult, ByAttribute, audit
from .stats import contingency_table, cramers_v, cramers_v_corrected
from .stream import StreamBalance, compare_streams, stream_balance, stream_balance_joint

__all__ = [
    "AuditReport",
    "AuditResult",
    "ByAttribute",
    "audit",
    "EstimatedFairness",
    "EstimatedLeakage",
    "FairnessResult",
    "LeakageResult",
    "MemorisationResult",
    "StreamBalance",
    "audit_representation",
    "compare_streams",
    "contingency_table",
    "cramers_v",
    "cramers_v_corrected",
    "estimated_fairness",
    "estimated_leakage",
    "group_fairness",
    "leakage",
    "memorisation",
    "nearest_distances",
    "stream_balance",
    "stream_balance_joint",
]
