"""Training: the one supervised/distillation loop and the multi-process launcher."""
