"""Vision side: own frame preprocessing (preprocess) and pruned ViT encoding on whole merged tokens (encoder)."""
