"""RASP: the language, its evaluator, and the library of named programs."""
