"""Metric learning for vsearch: train image embedding models on labelled images.

One concept per module, composed by :func:`training.trainer.fit`:

=================  ===========================================================================
``config``         the run's settings, and the recipes ``auto`` stands for (small images, photos)
``data``           class-per-folder or CSV discovery, decoding (bad files skipped), split by class
``preprocess``     the resize/crop/normalise transform shared by training and the exported encoder
``model``          timm backbone + projection head + L2 normalisation (``vsearch_tiny_cnn``: small images)
``sampler``        P x K batches from an explicit, per-epoch seeded ``torch.Generator``
``augment``        random shifts of training batches, seeded per step
``miners``         pytorch-metric-learning miners by name, a seeded random miner, FAISS hard negatives
``losses``         triplet / contrastive / ranking-hinge losses (PML), mean-reduced, with active counts
``trainer``        the AdamW + cosine loop, early stopping, AMP on CUDA, checkpoints and exact resumption
``metrics``        Recall@K, MAP@R, ROC AUC, EER, TAR@FAR
``evaluate``       embedding a labelled set, baselines (raw pixels, untrained, chance), JSON and PNG
``export``         the model file (loaded with ``torch.load(weights_only=True)``)
``encoder``        the ``trained:FILE`` encoder in vsearch's registry
``run``            a whole run as ``vsearch train`` does it (``python -m training`` runs the commands)
=================  ===========================================================================

Nothing is imported here: vsearch imports ``training.encoder`` on every model lookup, and that
must not pull in torch-heavy modules (timm, pytorch-metric-learning) until a ``trained:`` model is
actually asked for.
"""
