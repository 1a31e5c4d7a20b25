"""The bundled reference VLM: its definition, tokenizer and training on the synthetic labelled streams."""
