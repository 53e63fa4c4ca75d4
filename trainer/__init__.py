"""Fine-tuning: BERT-family encoders and the character-level CNN (needs the `train` extra)."""
