"""The results stage: records (one per result), the leaderboard (a fold over them), regression checks
against expected scores, published baselines, paired statistics and plots."""
