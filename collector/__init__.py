"""The collector: receive OTLP → decode → normalize → price → write."""
