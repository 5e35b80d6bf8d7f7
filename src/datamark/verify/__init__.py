"""Verification: pure statistics, the verifier that queries a suspect, and its result."""

from .result import VerificationResult
from .stats import TestOutcome, binomial_test, paired_ttest, wilcoxon_signed_rank
from .verifier import Verifier, verify

__all__ = ["TestOutcome", "VerificationResult", "Verifier", "binomial_test", "paired_ttest", "verify",
           "wilcoxon_signed_rank"]
