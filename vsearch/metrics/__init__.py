"""Metrics of embeddings: retrieval (Recall@K, MAP@R, top-k accuracy) and verification (ROC, AUC,
EER, TAR at FAR, confidence bounds). Pure functions of numpy arrays; no I/O, no models."""
