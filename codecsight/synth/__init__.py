"""Labelled synthetic surveillance streams: world model (scene), x264 encoding (encode), ground truth (labels),
and the generator behind `codecsight synth` (cli)."""
