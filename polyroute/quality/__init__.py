"""Routing on measured quality: metrics, prompt features, the router model, training."""
