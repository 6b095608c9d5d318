"""Cheap proxies for the C-score (consistency score of Jiang et al., ICML 2021)."""
