"""Proxies of the C-score (Jiang et al., ICML 2021) and the field's per-example hardness scores.

One call computes them all from one shared full-data training:
:func:`cscore_lab.proxies.suite.compute_proxies` -> :class:`~cscore_lab.proxies.suite.ProxyTable`.

================== ==================================================================
module             holds
================== ==================================================================
``suite``          ``ProxyTable`` and ``compute_proxies`` (the driver)
``families``       the registry: each family's needs and how it makes its columns
``recorders``      the ``train_group`` callbacks that record during the training
``gradients``      per-example logit summaries and gradients the recorders compute
``dynamics``       learning speed (cumulative accuracy, forgetting, ...)
``kde``            kernel densities (Numba kernels)
``neighbors``      k-NN label agreement, local outlier factor
``hardness``       AUM, EL2N, GraNd, VoG, data maps, Data-IQ, loss/margin, prototypicality
``label_issues``   cleanlab's confident learning on out-of-sample probabilities (extra)
``_validation``    the one input validation of the package (scikit-learn's checks)
================== ==================================================================
"""
