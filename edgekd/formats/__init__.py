"""Model files: ONNX and TFLite writing, reading, metadata, inspection, and running them through the device agent."""
