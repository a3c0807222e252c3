"""trec_eval-exact retrieval metrics. Pure functions over (qrels, run); nothing here imports torch.

>>> qrels = {"q1": {"d1": 1, "d2": 2}}
>>> run = {"q1": {"d1": 0.5, "d3": 0.4, "d2": 0.1}}
>>> round(mean(evaluate(qrels, run, ["ndcg@10"])["ndcg@10"]), 4)
0.7098
"""

from harness.metrics.evaluate import check_scorable, evaluate, mean
from harness.metrics.measures import Family, Measure, measure_help, parse_measure, register_measure

__all__ = ["Family", "Measure", "check_scorable", "evaluate", "mean", "measure_help", "parse_measure",
           "register_measure"]
