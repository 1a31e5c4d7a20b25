"""The streaming runtime: stream sessions, pipelines per method, the engine that batches them, events."""
from codecsight.runtime.engine import Engine, StreamReport
from codecsight.runtime.methods import METHODS, Method, method
from codecsight.runtime.pipeline import Counters, Event, Question, StreamPipeline

__all__ = ["METHODS", "Counters", "Engine", "Event", "Method", "Question", "StreamPipeline", "StreamReport",
           "method"]
