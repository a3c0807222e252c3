"""The results stage: records (one per result), the leaderboard (a fold over them), published baselines and
expected scores, paired statistics and plots. Regression checks, which run what they need, sit one floor up
beside the runner (``harness/check.py``)."""
