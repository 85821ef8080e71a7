"""Compression: structured pruning and quantization-aware training, and how their models are saved and exported.

* ``structure`` — save a reshaped model (pruned channels, folded BatchNorm) as a plain state_dict plus a JSON list of
  the layers that changed, so it is rebuilt from its spec without unpickling code.
* ``pruning`` — channel pruning with torch-pruning's dependency graph, iterative prune -> distillation fine-tune.
* ``qat`` — BatchNorm folding, PT2E fake quantization (torchao) with litert-torch's quantizer, the trained state.
* ``qat_export`` — the QAT graph to an int8 TFLite file (litert-torch) and an int8 QDQ ONNX file, with the learned
  ranges carried into both and checked in the written files.
* ``onnx_inspect`` — what an ONNX file really computes in (int8 weights and int8 activations, or not).
* ``checks`` — the checks ``edgekd validate`` runs before anything trains (layer names, traceability, op support).

Heavy libraries (torch-pruning, torchao, litert-torch, onnx) are imported inside the functions that need them.
"""
