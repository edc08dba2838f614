"""The Hugging Face Hub: model and dataset cards, publishing, the offline default models."""
