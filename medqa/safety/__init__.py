"""The one definition of every safety check, shared by the rule rewards, the offline judge and eval metrics.

All functions are pure functions over text, bilingual (Chinese and English). What they look for — red flags,
referral phrases, drugs and contraindications — is data a clinician can review: medqa/safety/data/*.yaml, each
rule next to its should-match / should-not-match examples, loaded and validated at import
(`medqa.safety.lexicon`). How text is read is code (`medqa.safety.engine`): phrases negated right before the
match ("不需要去急诊", "no need to go to the ER", "没有自杀念头", "denies suicidal ideation") do not count, red flags
told as past history or asked about in general do not count, and conditions ("如果…", "if…") cover their own
clause only.

Question-side checks: `red_flags`, `needs_emergency` (`emergency_sources`: who says so), `suicide_risk`, `pregnancy_or_child_context`.
Answer-side checks: `has_emergency_referral`, `has_conditional_referral`, `has_crisis_resources`,
`mentions_prescription_drug`, `has_specific_dose`, `has_physician_caveat`, `self_buying`, `risky_prescription`,
`contraindicated_drug_in_context`, `grave_diagnosis_asserted`, `has_hedging`, `has_referral`,
`has_risk_warning`, `has_empathy`.
"""

from __future__ import annotations

from medqa.safety import checks
from medqa.safety.checks import *  # noqa: F403  (the public checks, listed in checks.__all__)

__all__ = list(checks.__all__)
