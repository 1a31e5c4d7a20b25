"""CodecSight: standing questions over live video with vision-language models, guided by codec signals."""
__version__ = "0.1.0"
