"""Nuclei segmentation service: decode → normalise → tile → ONNX → instances → encode."""
