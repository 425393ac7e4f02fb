"""Training: SFT (LoRA or full) with dataset mixing and translation data, the backward model, and DPO."""
