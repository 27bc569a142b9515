"""Distillation pipeline: import transcripts, scrub PII, label with the teacher, build datasets, train, export."""
