"""Codec signals: stream source -> per-frame codec signals -> sampled frames -> change map on a token grid."""
from codecsight.signals.changemap import ChangeMap, ChangeRule
from codecsight.signals.frame import FrameSignal, SampledFrame, TokenChange
from codecsight.signals.reader import DecodeOptions, Sampling, SignalReader, read_signals, sample_frames
from codecsight.signals.source import StreamInfo

__all__ = ["ChangeMap", "ChangeRule", "DecodeOptions", "FrameSignal", "SampledFrame", "Sampling", "SignalReader",
           "StreamInfo", "TokenChange", "read_signals", "sample_frames"]
