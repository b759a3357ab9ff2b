"""Catalogue entries for features that a fitted model computes at the cutoff.

The BG/NBD model (``models/clv.py``), fitted on purchases strictly before a cutoff, gives each
customer's probability of still being active and expected purchases over the horizon; the
churn model uses them as features (``models/clv_features.py``). They are declared here so the
generated catalogue lists every feature the churn model sees.
"""

from features.catalogue import register

P_ALIVE = register(
    "bgnbd_p_alive",
    "clv",
    "probability",
    "all history",
    "BG/NBD probability that the customer is still active (fitted before the cutoff)",
)
EXPECTED_PURCHASES = register(
    "bgnbd_expected_purchases",
    "clv",
    "count",
    "horizon",
    "BG/NBD expected purchases over the next horizon (fitted before the cutoff)",
)
