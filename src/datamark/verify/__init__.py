"""Verification: pure statistics, the verifier that queries a suspect, and its result."""

from .evidence import check_evidence, reverify, verify_with_evidence
from .result import VerificationResult
from .sequential import SequentialVerifier
from .stats import TestOutcome, binomial_test, paired_ttest, wilcoxon_signed_rank
from .verifier import Verifier, verify

__all__ = ["SequentialVerifier", "TestOutcome", "VerificationResult", "Verifier", "binomial_test",
           "check_evidence", "paired_ttest", "reverify", "verify", "verify_with_evidence", "wilcoxon_signed_rank"]
