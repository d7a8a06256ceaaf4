"""STDD training, data sets, objective and zero-shot evaluation (`accelerate launch training/train.py`)."""
