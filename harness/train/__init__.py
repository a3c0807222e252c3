"""The built-in trainer: relevance-aware contrastive pre-training (ReContriever), Contriever's MoCo and
in-batch baselines, further pre-training on a target corpus, and few-shot fine-tuning.

Modules: ``losses`` (pure functions of embeddings), ``moco`` (queue, momentum update, rank gathering),
``data`` (token-stream cache, windows, crops, augmentations), ``config`` (every hyper-parameter),
``encoder`` (a Hugging Face model + the evaluation side's pooling), ``checkpoint`` (atomic save, keep
last N, resume state), ``trainer`` (the loop), ``finetune``, ``evaluate`` and ``plot``.
Importing this package does not import torch; the submodules do.
"""
